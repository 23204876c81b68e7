"""Per-client request rates: one bucket per API token (or logged-in user), one per address otherwise."""

from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle


class ClientRateThrottle(SimpleRateThrottle):
    scope = "client"

    def __init__(self):
        pass  # the rate depends on the request, see allow_request

    def allow_request(self, request, view) -> bool:
        authenticated = bool(request.user and request.user.is_authenticated)
        # Read at each request, so that settings overrides apply without re-importing.
        self.rate = settings.API_THROTTLE_RATE if authenticated else settings.API_ANON_THROTTLE_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, Token):
            ident = f"token:{request.auth.key}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
