"""A Redis lease: at most one holder per key, kept alive by renewing before it expires."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from redis.exceptions import RedisError

from core.redis_client import get_redis

log = logging.getLogger(__name__)

# Renew/release only our own lease (compare-and-act, atomically in Redis).
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Lease:
    def __init__(self, key: str, ttl_s: float):
        self.key, self.ttl_ms = key, int(ttl_s * 1000)
        # Names the holder (host and pid) for whoever looks at the key, and is unique to this lease.
        self.token = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None

    def acquire(self) -> bool:
        return bool(get_redis().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """False when the lease expired or someone else holds it now."""
        return bool(get_redis().eval(RENEW, 1, self.key, self.token, self.ttl_ms))

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._heart is not None:
            self._heart.join()

    def release(self) -> None:
        self.stop_renewing()
        try:
            get_redis().eval(RELEASE, 1, self.key, self.token)
        except RedisError as exc:  # it expires on its own
            log.warning("%s: lease not released (%s)", self.key, exc)

    def keep_alive(self) -> None:
        """Renew from a thread of its own, so a holder busy for longer than the TTL keeps its lease.

        `lost` is set once a renewal is refused, or when no renewal succeeded
        for a whole TTL (Redis down: the key may have expired and been taken).
        """
        self._heart = threading.Thread(target=self._beat, name=f"lease {self.key}", daemon=True)
        self._heart.start()

    def _beat(self) -> None:
        ttl_s = self.ttl_ms / 1000
        renewed = time.monotonic()
        while not self._stop.wait(ttl_s / 3):
            try:
                if not self.renew():
                    break
                renewed = time.monotonic()
            except RedisError as exc:
                log.warning("%s: lease renewal failed (%s)", self.key, exc)
                if time.monotonic() - renewed >= ttl_s:
                    break
        else:
            return
        self.lost.set()


def held(key: str) -> bool:
    return bool(get_redis().exists(key))


def holder(key: str) -> str | None:
    """The process holding the lease, as "host pid"; None when nobody does."""
    token = get_redis().get(key)
    return token.decode().rsplit(" ", 1)[0] if token else None
