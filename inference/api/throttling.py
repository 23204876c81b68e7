"""Per-client request rates: one bucket per API token (or logged-in user), one per address otherwise.

Fixed windows counted in Redis with one INCR: the same counters serve the DRF
views and the read cache (inference.readcache), so a client has one budget
whichever way its requests are answered.
"""

from __future__ import annotations

import json
import logging
import time
from functools import cache

from django.conf import settings
from redis import RedisError
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from apitokens.models import ApiToken
from core import prometheus
from core.redis_client import get_redis

log = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Count a request in its window (KEYS[1], expiring after ARGV[1] s) and return the count, then the value of
# every further key: the read cache counts and reads its answer in one round trip.
COUNT_SCRIPT = """
local result = {redis.call('INCR', KEYS[1])}
if result[1] == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do result[i] = redis.call('GET', KEYS[i]) end
return result
"""


def parse_rate(rate: str) -> tuple[int, int]:
    """ "1200/min" -> (1200, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period[0]]


def rate_for(authenticated: bool) -> tuple[int, int]:
    # Read at each request, so that settings overrides apply without re-importing.
    return parse_rate(settings.API_THROTTLE_RATE if authenticated else settings.API_ANON_THROTTLE_RATE)


def clock() -> float:
    """Seconds since the epoch: the one clock of the throttle windows (tests hold it still)."""
    return time.time()


def bucket(ident: str, period: int, now: float | None = None) -> tuple[str, float]:
    """Redis key of the client's current window (at now, default clock()) and the seconds left in it."""
    if now is None:
        now = clock()
    window = int(now // period)
    return f"inference:throttle:{ident}:{period}:{window}", (window + 1) * period - now


def token_ident(token_id: int) -> str:
    """A token's bucket is named by its id: no key, nor anything derived from one, is written to Redis."""
    return f"token:{token_id}"


def address_ident(address: str) -> str:
    """The peer address; X-Forwarded-For is honoured only as uvicorn's --proxy-headers applies it."""
    return f"addr:{address}"


def throttled_body(retry_after: float) -> bytes:
    """The JSON body of a 429, as DRF renders its Throttled exception."""
    return json.dumps({"detail": str(Throttled(retry_after).detail)}, separators=(",", ":")).encode()


@cache
def _count_script():
    return get_redis().register_script(COUNT_SCRIPT)


def address_refused(address: str) -> None:
    """Throttled if the address has used its anonymous budget: checked before a token costs a database query."""
    limit, period = rate_for(False)
    key, retry_after = bucket(address_ident(address), period)
    try:
        count = int(get_redis().get(key) or 0)
    except RedisError:
        return
    if count >= limit:
        prometheus.API_THROTTLED.labels("anonymous").inc()
        raise Throttled(retry_after)


def count_failure(address: str) -> None:
    """A failed authentication costs the address one request of its anonymous budget."""
    _, period = rate_for(False)
    key, _ = bucket(address_ident(address), period)
    try:
        _count_script()(keys=[key], args=[period + 1])
    except RedisError:
        pass  # no counters while Redis is down (the throttle says so)


class ClientRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        authenticated = bool(request.user and request.user.is_authenticated)
        if isinstance(request.auth, ApiToken):
            ident = token_ident(request.auth.pk)
        elif authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = address_ident(request.META.get("REMOTE_ADDR", ""))
        limit, period = rate_for(authenticated)
        key, self.retry_after = bucket(ident, period)
        try:
            count = _count_script()(keys=[key], args=[period + 1])[0]
        except RedisError as exc:  # no counters while Redis is down: serve rather than fail
            log.warning("throttling off, Redis unavailable: %s", exc)
            return True
        if count > limit:
            prometheus.API_THROTTLED.labels("authenticated" if authenticated else "anonymous").inc()
        return count <= limit

    def wait(self) -> float:
        return self.retry_after
