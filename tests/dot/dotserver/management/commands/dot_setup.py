"""Creates the test's user and confidential client; running it again changes
nothing (the secret is reset to the same value).

The first token pair is not made here: the test asks the real token endpoint
for it (the password grant, enabled for this client only), so that every
token of the family, the first one included, is issued by DOT's own code.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model

CLIENT_ID = "dot-fleet"
CLIENT_SECRET = "dot-fleet-secret:/+ %&="
USERNAME = "fleet"
PASSWORD = "fleet-password"


class Command(BaseCommand):
    help = "Create the dot_fleet test user and client (idempotent)."

    def handle(self, *args, **options):
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=USERNAME)
        user.set_password(PASSWORD)
        user.save()
        Application = get_application_model()
        app = Application.objects.filter(client_id=CLIENT_ID).first() or Application(client_id=CLIENT_ID)
        app.name = "dot-fleet"
        app.user = user
        app.client_type = Application.CLIENT_CONFIDENTIAL
        # The password grant (RFC 6749 §4.3) gives the first pair without a
        # browser; DOT allows refresh_token for every grant type but
        # client_credentials.
        app.authorization_grant_type = Application.GRANT_PASSWORD
        app.redirect_uris = ""
        app.client_secret = CLIENT_SECRET  # hashed on save (hash_client_secret)
        app.hash_client_secret = True
        app.save()
