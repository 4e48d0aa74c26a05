from django.urls import include, path
from oauth2_provider import urls as dot_urls

from . import views

# DOT's endpoints under /o/ (authorize, revoke_token, introspect, ...), with
# the token endpoint counted. Ours come first, so /o/token/ is the counting
# one.
urlpatterns = [
    path("o/token/", views.CountingTokenView.as_view(), name="counted-token"),
    path("o/", include((dot_urls.base_urlpatterns, "oauth2_provider"))),
    path("api/ping", views.PingView.as_view()),
    path("test/stats", views.stats),
    path("test/health", views.health),
]
