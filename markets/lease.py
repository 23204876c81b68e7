"""A Redis lease: at most one holder per key, kept alive by renewing before it expires."""

from __future__ import annotations

import uuid

from core.redis_client import get_redis

# Renew/release only our own lease (compare-and-act, atomically in Redis).
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Lease:
    def __init__(self, key: str, ttl_s: float):
        self.key, self.ttl_ms = key, int(ttl_s * 1000)
        self.token = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(get_redis().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """False when the lease expired or someone else holds it now."""
        return bool(get_redis().eval(RENEW, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        get_redis().eval(RELEASE, 1, self.key, self.token)


def stream_key(market_name: str) -> str:
    return f"cryptopred:stream:{market_name}"


def held(key: str) -> bool:
    return bool(get_redis().exists(key))
