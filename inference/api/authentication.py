"""Token authentication without a database query per request.

A valid key is remembered in this process for API_TOKEN_CACHE_S seconds, so a bot
polling the latest prediction costs Redis round trips only. Rotating or deleting
a token takes effect at once in the process that does it, and within
API_TOKEN_CACHE_S (twice that on the fast path, which re-checks in the
background) everywhere else; so does deactivating a user.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models.signals import post_delete
from django.dispatch import receiver
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS

_valid: dict[str, tuple[tuple, float]] = {}  # key -> ((user, token), when checked on the monotonic clock)


def remembered(key: str, max_age: float) -> tuple | None:
    """(user, token) if the key was accepted within max_age seconds, else None."""
    hit = _valid.get(key)
    return hit[0] if hit is not None and time.monotonic() - hit[1] < max_age else None


def check(key: str) -> tuple:
    """(user, token) from the database, remembered; AuthenticationFailed (and forgotten) otherwise."""
    try:
        credentials = TokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        _valid.pop(key, None)
        raise
    if settings.API_TOKEN_CACHE_S > 0:
        _valid[key] = (credentials, time.monotonic())
    return credentials


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple:
        return remembered(key, settings.API_TOKEN_CACHE_S) or check(key)


@receiver(post_delete, sender=Token, dispatch_uid="inference.forget_token")
def forget_token(sender, instance: Token, **kwargs) -> None:
    _valid.pop(instance.key, None)


class ReadSessionAuthentication(SessionAuthentication):
    """A browser session authenticates reads only.

    The API has no write, so a session never needs to authenticate one; and a
    write with a session cookie but no CSRF token then gets the 405 every other
    client gets, not DRF's 403 "CSRF Failed" (authentication runs before the
    permission check).
    """

    def authenticate(self, request):
        if request.method not in SAFE_METHODS:
            return None
        return super().authenticate(request)


class ReadSessionScheme(SessionScheme):
    """The OpenAPI schema documents the session as drf-spectacular does DRF's own (cookieAuth)."""

    target_class = ReadSessionAuthentication
