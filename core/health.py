"""Component checks behind /healthz. Apps add their own with @register (imported from their ready()).

Every check runs in its own thread with one shared deadline, so /healthz
answers within HEALTH_TIMEOUT_S whatever is down; a check still running then
is reported as timed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection, connections

from core.redis_client import get_redis

BEAT_KEY = "cryptopred:beat:last_tick"  # the beat scheduler's heartbeat in Redis (written at every tick)
Check = Callable[[], dict]
CHECKS: dict[str, Check] = {}
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="healthz")


def register(name: str) -> Callable[[Check], Check]:
    """A check returns a dict with at least "ok"; an exception counts as failure."""

    def decorator(func: Check) -> Check:
        CHECKS[name] = func
        return func

    return decorator


@register("database")
def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


@register("redis")
def check_redis() -> dict:
    get_redis().ping()
    return {"ok": True}


@register("timescaledb")
def check_timescaledb() -> dict:
    from core.db import timescaledb_enabled

    # Optional extension: reported, never a failure.
    return {"ok": True, "enabled": timescaledb_enabled()}


def _run(check: Check) -> dict:
    try:
        return check()
    except Exception as exc:  # a health probe reports failures, it never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        connections.close_all()  # this pool thread's own connections


def run_checks(timeout_s: float | None = None) -> tuple[bool, dict]:
    timeout_s = settings.HEALTH_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    futures = {name: _pool.submit(_run, check) for name, check in CHECKS.items()}
    results: dict[str, dict] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {timeout_s:g}s"}
    return all(r["ok"] for r in results.values()), results
