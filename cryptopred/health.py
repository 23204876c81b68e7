"""Component checks behind /healthz. Apps add their own with @register."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from cryptopred.beat import BEAT_KEY
from cryptopred.redis_client import get_redis

Check = Callable[[], dict]
CHECKS: dict[str, Check] = {}


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


@register("celery")
def check_celery() -> dict:
    from cryptopred.celery import app

    replies = app.control.ping(timeout=1.0)
    workers = sorted(name for reply in replies for name in reply)
    return {"ok": bool(workers), "workers": workers}


@register("beat")
def check_beat() -> dict:
    raw = get_redis().get(BEAT_KEY)
    if raw is None:
        return {"ok": False, "error": "no tick recorded"}
    age = time.time() - float(raw)
    return {"ok": age <= settings.BEAT_STALE_AFTER_S, "last_tick_age_s": round(age, 1)}


@register("timescaledb")
def check_timescaledb() -> dict:
    from cryptopred.db import timescaledb_enabled

    # Optional extension: reported, never a failure.
    return {"ok": True, "enabled": timescaledb_enabled()}


def run_checks() -> tuple[bool, dict]:
    results: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # a health probe reports failures, it never raises
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return all(r["ok"] for r in results.values()), results
