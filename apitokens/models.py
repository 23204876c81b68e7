"""API tokens for bots: only a SHA-256 of each key is stored, a key is shown once (created or rotated).

A user holds any number of named tokens (one per bot), each with an optional
expiry, revocable. The key is random (240 bits), so a plain SHA-256 is enough
to find it by and to keep a database dump from giving it away; the prefix (its
first characters) is not secret and tells keys apart in the admin and the
command's list. Checking a key (and remembering it per process) is the API's
job: inference.api.authentication.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_START = "cp_"  # new keys start with it, so a leaked one is recognisable (secret scanners, logs)
PREFIX_LENGTH = 11  # "cp_" and 8 random characters; a migrated DRF key shows its first 8 hex digits


def digest(key: str) -> str:
    """SHA-256 (hex) of a key as presented; any str (a client's input), never an error."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_START + secrets.token_urlsafe(30)


class ApiTokenQuerySet(models.QuerySet):
    def live(self, now: datetime | None = None) -> ApiTokenQuerySet:
        now = now or timezone.now()
        return self.filter(revoked__isnull=True).filter(models.Q(expires__isnull=True) | models.Q(expires__gt=now))

    def issue(self, user, name: str, expires: datetime | None = None) -> ApiToken:
        """A new token; its key is on the returned object (token.key) and nowhere else."""
        token = self.model(user=user, name=name, expires=expires)
        token.set_key()
        token.save()
        return token

    def find(self, key: str) -> ApiToken | None:
        """The token with this key (live or not) and its user, or None."""
        return self.select_related("user").filter(digest=digest(key)).first()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64, help_text="What uses it, e.g. the bot's name; unique per user.")
    prefix = models.CharField("key starts", max_length=16, editable=False, help_text="Not secret: tells keys apart.")
    digest = models.CharField(max_length=64, unique=True, editable=False, help_text="SHA-256 of the key.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires = models.DateTimeField(null=True, blank=True, help_text="Refused from this time on; empty: never.")
    revoked = models.DateTimeField(null=True, blank=True, editable=False, help_text="Refused from this time on.")

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        ordering = ["user", "name"]
        constraints = [
            # Revoked tokens stay listed (when, which prefix); a live name is one token.
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(revoked__isnull=True),
                name="apitoken_live_name_per_user",
                violation_error_message="This user already has a token with this name (revoke it first).",
            ),
        ]

    key: str | None = None  # the raw key, in memory only, right after set_key()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_key(self) -> str:
        """A new random key (not saved yet): only its digest and prefix are kept; the key is on self.key."""
        self.key = new_key()
        self.prefix, self.digest = self.key[:PREFIX_LENGTH], digest(self.key)
        return self.key

    def rotate(self) -> str:
        """A new key for this token (the old one is refused from now on); returns it."""
        key = self.set_key()
        self.save(update_fields=["prefix", "digest"])
        return key

    def revoke(self) -> None:
        if self.revoked is None:
            self.revoked = timezone.now()
            self.save(update_fields=["revoked"])

    def state(self, now: datetime | None = None) -> str:
        """'live', 'expired' or 'revoked'."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= (now or timezone.now()):
            return "expired"
        return "live"
