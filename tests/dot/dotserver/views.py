"""The test's endpoints around DOT's own views, and the counts they keep.

- /o/token/ is DOT's TokenView, counted by grant type and outcome (the
  OAuth `error` code of each failure, e.g. invalid_grant).
- /api/ping is a protected resource checked by DOT itself
  (ProtectedResourceView). DOT's default denial is a bare 403, which no
  client takes for an expired token; ProtectedResourceMetadataMixin (DOT's
  opt-in, RFC 6750/9728) turns it into 401 with
  `WWW-Authenticate: Bearer error="invalid_token",error_description=...`.
- /test/stats reports the counts as JSON.
- DOT_API_DELAY_MS (default 0) makes /api/ping wait before DOT checks the
  token, as a busy server's queue does.

The server is one process with a thread per connection, so the counts are
plain dicts under one lock.
"""

import json
import os
import threading
import time

from django.http import HttpResponse, JsonResponse
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauth2_provider.views import ProtectedResourceView, TokenView
from oauth2_provider.views.mixins import ProtectedResourceMetadataMixin

# DOT_API_DELAY_MS: each /api/ping request waits this long before DOT
# checks its token (default 0), as on a server with a queue.
API_DELAY = int(os.environ.get("DOT_API_DELAY_MS", "0")) / 1000

_lock = threading.Lock()
_started = time.monotonic()
_stats = {
    # grant_type -> {"ok": n, "<error code>": n, ...}
    "token": {},
    # milliseconds since the server started, of each successful refresh
    "refresh_ms": [],
    "api_200": 0,
    "api_401": 0,
    # error_description of each 401 -> count ("The access token is invalid."
    # for a deleted one, i.e. revoked by a rotation; "... has expired.")
    "api_401_reasons": {},
    "api_other": 0,
}


def _count_token(grant_type, outcome):
    with _lock:
        per_grant = _stats["token"].setdefault(grant_type or "(none)", {})
        per_grant[outcome] = per_grant.get(outcome, 0) + 1
        if grant_type == "refresh_token" and outcome == "ok":
            _stats["refresh_ms"].append(round((time.monotonic() - _started) * 1000))


class CountingTokenView(TokenView):
    def post(self, request, *args, **kwargs):
        grant_type = request.POST.get("grant_type")
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:
            outcome = "ok"
        else:
            try:
                outcome = json.loads(response.content).get("error") or f"http_{response.status_code}"
            except (ValueError, AttributeError):
                outcome = f"http_{response.status_code}"
        _count_token(grant_type, outcome)
        return response


class PingView(ProtectedResourceMetadataMixin, ProtectedResourceView):
    def get(self, request, *args, **kwargs):
        return JsonResponse({"user": request.resource_owner.get_username()})

    def unauthenticated_response(self, request, oauthlib_request=None):
        response = super().unauthenticated_response(request, oauthlib_request)
        error = getattr(oauthlib_request, "oauth2_error", None) or {}
        reason = str(error.get("error_description") or error.get("error") or "(none)")
        with _lock:
            if response.status_code == 401:
                _stats["api_401"] += 1
                reasons = _stats["api_401_reasons"]
                reasons[reason] = reasons.get(reason, 0) + 1
            else:
                _stats["api_other"] += 1
        return response

    def dispatch(self, request, *args, **kwargs):
        if API_DELAY:
            # A busy server: the request waits before its token is checked,
            # so a rotation meanwhile makes it a 401.
            time.sleep(API_DELAY)
        response = super().dispatch(request, *args, **kwargs)
        if response.status_code == 200:
            with _lock:
                _stats["api_200"] += 1
        return response


def stats(request):
    with _lock:
        snapshot = json.loads(json.dumps(_stats))
    refresh = snapshot["token"].get("refresh_token", {})
    snapshot["refreshes"] = refresh.get("ok", 0)
    snapshot["refresh_errors"] = sum(n for outcome, n in refresh.items() if outcome != "ok")
    snapshot["invalid_grants"] = refresh.get("invalid_grant", 0)
    snapshot["live_refresh_tokens"] = get_refresh_token_model().objects.filter(revoked__isnull=True).count()
    snapshot["access_tokens"] = get_access_token_model().objects.count()
    return JsonResponse(snapshot)


def health(request):
    return HttpResponse("ok")
