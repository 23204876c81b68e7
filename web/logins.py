"""Failed admin logins are limited per user name and per client address.

Counted in Redis, so every web process shares the counts: after LOGIN_MAX_FAILURES
failures within LOGIN_LOCKOUT_S, the login form refuses that user name (from any
address) and that address (for any user name) until the window has passed, without
checking the password. A successful login clears its user name's count. While Redis
is unavailable logins are not limited (best_effort logs the outage once).
"""

from __future__ import annotations

import hashlib
import math

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm

from core.redis_client import best_effort, get_redis

# Count a failure in each key (expiring LOGIN_LOCKOUT_S after its first failure).
FAIL_SCRIPT = """
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
"""


def keys(username: str, address: str) -> list[str]:
    """Redis keys of the user name's and the address's failures (the name digested: any text may be typed)."""
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    return [f"cryptopred:login:user:{name}", f"cryptopred:login:addr:{address}"]


def locked_for(username: str, address: str) -> float:
    """Seconds until the user name and the address may try again (0: now)."""

    def check() -> float:
        with get_redis().pipeline(transaction=False) as pipe:
            for key in keys(username, address):
                pipe.get(key)
                pipe.ttl(key)
            counts_ttls = pipe.execute()
        waits = [
            max(ttl, 1)
            for count, ttl in zip(counts_ttls[::2], counts_ttls[1::2], strict=True)
            if int(count or 0) >= settings.LOGIN_MAX_FAILURES
        ]
        return max(waits, default=0)

    return best_effort("checking failed admin logins", check) or 0


def failed(username: str, address: str) -> None:
    best_effort(
        "counting a failed admin login",
        lambda: get_redis().eval(FAIL_SCRIPT, 2, *keys(username, address), settings.LOGIN_LOCKOUT_S),
    )


def succeeded(username: str) -> None:
    best_effort("clearing failed admin logins", lambda: get_redis().delete(keys(username, "")[0]))


class LimitedAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing a locked user name or address before it checks the password."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        wait = locked_for(username, address)
        if wait:
            raise forms.ValidationError(
                "Too many failed logins for this user name or from this address: try again in %(minutes)d min.",
                code="locked",
                params={"minutes": math.ceil(wait / 60)},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            failed(username, address)
            raise
        succeeded(username)
        return cleaned
