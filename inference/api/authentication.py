"""Token authentication without a database query per request.

Keys are checked against apitokens.ApiToken (only their SHA-256 is stored). A
valid key is remembered in this process, by its digest, for API_TOKEN_CACHE_S
seconds, so a bot polling the latest prediction costs Redis round trips only.
Revoking, rotating or deleting a token, or deactivating its user, takes effect
at once in the process that does it, and within API_TOKEN_CACHE_S everywhere
else (twice that on the read cache, which re-checks in the background; an open
websocket re-checks at that pace, at most once a second). An expiry takes
effect at its time everywhere: a remembered key is refused once its token has
expired.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.authentication import SessionScheme
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS

from apitokens.models import ApiToken, digest
from inference.api import throttling

# digest of a key -> ((user, token), when checked on the monotonic clock, expiry as a Unix time or inf)
_valid: dict[str, tuple[tuple, float, float]] = {}

# Why a key is refused: the REST answer's detail (DRF's wording) and the websocket error frame.
REFUSED = {
    "invalid": ("Invalid token.", "invalid token"),
    "expired": ("Token expired.", "token expired"),
    "revoked": ("Token revoked.", "token revoked"),
    "inactive": ("User inactive or deleted.", "user inactive or deleted"),
}


class TokenRefused(AuthenticationFailed):
    """A 401; reason is a key of REFUSED."""

    def __init__(self, reason: str):
        super().__init__(REFUSED[reason][0])
        self.reason = reason

    @property
    def frame_text(self) -> str:
        return REFUSED[self.reason][1]


def remembered(key: str, max_age: float) -> tuple | None:
    """(user, token) if the key was accepted within max_age seconds and its token has not expired, else None."""
    hit = _valid.get(digest(key))
    if hit is None or time.monotonic() - hit[1] >= max_age or time.time() >= hit[2]:
        return None
    return hit[0]


def check(key: str) -> tuple:
    """(user, token) from the database, remembered; TokenRefused (and forgotten) otherwise."""
    token = ApiToken.objects.find(key) if key else None
    if token is None:
        reason = "invalid"
    elif not token.user.is_active:
        reason = "inactive"
    else:
        reason = None if (state := token.state()) == "live" else state
    if reason is not None:
        _valid.pop(digest(key), None)
        raise TokenRefused(reason)
    credentials = (token.user, token)
    if settings.API_TOKEN_CACHE_S > 0:
        expires = token.expires.timestamp() if token.expires is not None else math.inf
        _valid[token.digest] = (credentials, time.monotonic(), expires)
    return credentials


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's "Authorization: Token <key>" header, checked against ApiToken through the per-process cache.

    A refused header counts against its address's anonymous budget, and an address that has used it gets a
    429 before its next unknown key is looked up: guessing keys costs what anonymous reads cost.
    """

    address = ""

    def authenticate(self, request):
        self.address = request.META.get("REMOTE_ADDR", "")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttling.count_failure(self.address)
            raise

    def authenticate_credentials(self, key: str) -> tuple:
        if credentials := remembered(key, settings.API_TOKEN_CACHE_S):
            return credentials
        throttling.address_refused(self.address)
        return check(key)


def forget(predicate) -> None:
    for key in [k for k, (credentials, _, _) in list(_valid.items()) if predicate(*credentials)]:
        _valid.pop(key, None)


@receiver([post_save, post_delete], sender=ApiToken, dispatch_uid="inference.forget_token")
def forget_token(sender, instance: ApiToken, **kwargs) -> None:
    """Revoked, rotated (its old key), re-dated or deleted in this process: checked again at its next use."""
    forget(lambda user, token: token.pk == instance.pk)


@receiver([post_save, post_delete], sender=settings.AUTH_USER_MODEL, dispatch_uid="inference.forget_user_tokens")
def forget_user_tokens(sender, instance, **kwargs) -> None:
    """A user deactivated or deleted in this process: its tokens are checked again at their next use."""
    forget(lambda user, token: user.pk == instance.pk)


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
