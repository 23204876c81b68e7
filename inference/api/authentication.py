"""Token authentication without a database query per request.

A valid key is remembered in this process for API_TOKEN_CACHE_S seconds, so a bot
polling the latest prediction costs Redis round trips only. Rotating or deleting
a token takes effect at once in the process that does it, and within
API_TOKEN_CACHE_S everywhere else; so does deactivating a user.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models.signals import post_delete
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

_valid: dict[str, tuple[tuple, float]] = {}  # key -> ((user, token), expiry on the monotonic clock)


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple:
        hit = _valid.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        credentials = super().authenticate_credentials(key)  # raises AuthenticationFailed
        if settings.API_TOKEN_CACHE_S > 0:
            _valid[key] = (credentials, now + settings.API_TOKEN_CACHE_S)
        return credentials


@receiver(post_delete, sender=Token, dispatch_uid="inference.forget_token")
def forget_token(sender, instance: Token, **kwargs) -> None:
    _valid.pop(instance.key, None)
