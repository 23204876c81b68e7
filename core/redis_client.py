"""One Redis client per process, for the app's own keys (not Celery's); best-effort calls through an outage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import TypeVar

import redis
from django.conf import settings
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_BASE_S, RETRY_MAX_S = 0.5, 10.0


@cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


class Outage:
    """This process's view of a Redis outage: one line when it starts, one when it ends, backoff in between.

    During an outage, best-effort calls are skipped until the next retry is due,
    so a process neither floods its log nor waits out a timeout at every call.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.failures = 0
        self.retry_at = 0.0

    def skipping(self) -> bool:
        return self.since is not None and time.monotonic() < self.retry_at

    def failed(self, what: str, exc: Exception) -> None:
        with self.lock:
            now = time.monotonic()
            if self.since is None:
                self.since = now
                log.warning("redis unavailable (%s: %s, %s); retrying with backoff", type(exc).__name__, exc, what)
            self.failures += 1
            self.retry_at = now + min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (self.failures - 1))

    def answered(self) -> None:
        if self.since is None:  # the common case, without the lock
            return
        with self.lock:
            if self.since is not None:
                log.warning(
                    "redis back after %.0fs (%d attempts failed)",
                    time.monotonic() - self.since,
                    self.failures,
                )
                self.since, self.failures = None, 0


OUTAGE = Outage()


def best_effort(what: str, call: Callable[[], T], outage: Outage = OUTAGE) -> T | None:
    """call() (a Redis call whose failure loses nothing: a cache, a live push), or None when Redis is unavailable.

    what names the call in the outage's one log line, e.g. "caching the latest prediction of kraken:BTC-USD";
    outage is the Redis server's (another than REDIS_URL, such as a channel layer shard, has its own).
    """
    if outage.skipping():
        return None
    try:
        result = call()
    except (RedisError, OSError) as exc:  # OSError: refused, reset, timed out (socket or a future's wait)
        outage.failed(what, exc)
        return None
    outage.answered()
    return result
