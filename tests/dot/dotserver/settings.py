"""Settings of the Django OAuth Toolkit server for the dot_fleet test.

Loopback only, SQLite in a directory the test gives (DOT_DB_DIR), and DOT
configured like a deployment that rotates refresh tokens:

- ROTATE_REFRESH_TOKEN = True (DOT's default too): each refresh issues a new
  refresh token and revokes the one presented.
- DOT's default revocation of the previous access token on refresh: the
  rotation calls RefreshToken.revoke(), which deletes the access token the
  old refresh token was issued with (oauth2_provider/models.py,
  AbstractRefreshToken.revoke). So a peer's in-flight request with that
  access token meets a 401 at once.
- ACCESS_TOKEN_EXPIRE_SECONDS = 4 (DOT_ACCESS_TOKEN_SECONDS overrides).
- REFRESH_TOKEN_GRACE_PERIOD_SECONDS = 0 (DOT's default): a rotated refresh
  token is refused at once with invalid_grant.
- REFRESH_TOKEN_REUSE_PROTECTION = True: a rotated refresh token presented
  again revokes the whole family, as Auth0/Okta/oidc-provider do, so a
  double spend cannot go unnoticed (every later request fails).
"""

import os
from pathlib import Path

DB_DIR = Path(os.environ["DOT_DB_DIR"])

SECRET_KEY = "dot-fleet-test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
    "dotserver",
]
MIDDLEWARE = []
ROOT_URLCONF = "dotserver.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DB_DIR / "db.sqlite3"),
        "OPTIONS": {
            # Writers queue for the lock instead of failing with "database is
            # locked"; IMMEDIATE takes the write lock when a transaction
            # starts, so two refreshes are serialized like DOT's
            # select_for_update does on a server database.
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
        },
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Fast password hashing: the test user's password is checked once per run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("DOT_ACCESS_TOKEN_SECONDS", "4")),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "SCOPES": {"read": "Reading scope"},
    "DEFAULT_SCOPES": ["read"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        # DOT warns on every password grant (RFC 9700 §2.4); said once here:
        # the password grant only gets the first token pair.
        "oauth2_provider": {"level": "ERROR"},
        # No line per 4xx answer ("Unauthorized: /api/ping"); 5xx still show.
        "django.request": {"level": "ERROR"},
    },
}
