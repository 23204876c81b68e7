"""/healthz components of the project's own processes: Celery workers and the beat scheduler."""

from __future__ import annotations

import time

from django.conf import settings

from core.health import BEAT_KEY, register
from core.redis_client import get_redis

_workers_seen = 1  # how many workers answered last time: stop waiting once that many have


@register("celery")
def check_celery() -> dict:
    global _workers_seen
    from cryptopred.celery import app

    # ping waits its whole timeout unless `limit` replies come first: /healthz must answer within a second.
    replies = app.control.ping(timeout=settings.HEALTH_TIMEOUT_S * 0.8, limit=_workers_seen)
    workers = sorted(name for reply in replies for name in reply)
    _workers_seen = max(1, len(workers))
    return {"ok": bool(workers), "workers": workers}


@register("beat")
def check_beat() -> dict:
    raw = get_redis().get(BEAT_KEY)
    if raw is None:
        return {"ok": False, "error": "no tick recorded"}
    age = time.time() - float(raw)
    return {"ok": age <= settings.BEAT_STALE_AFTER_S, "last_tick_age_s": round(age, 1)}
