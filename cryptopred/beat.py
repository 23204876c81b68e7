"""celery-beat scheduler that keeps the schedule in step with the markets and leaves a heartbeat for /healthz."""

import logging
import time

import redis
from django_celery_beat.schedulers import DatabaseScheduler

from core import prometheus
from core.health import BEAT_KEY
from core.redis_client import get_redis
from pipeline import schedule

SYNC_EVERY_S = 60.0
log = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):
    """The django-celery-beat database scheduler, plus schedule sync and a last-tick timestamp."""

    synced_at = 0.0

    def tick(self, *args, **kwargs):
        if time.monotonic() - self.synced_at >= SYNC_EVERY_S:
            try:
                schedule.sync()  # new rows mark the schedule changed: the scheduler reloads it itself
            except Exception as exc:  # the database may be down: the next tick tries again
                log.warning("beat schedule not synced: %s", exc)
            self.synced_at = time.monotonic()
        interval = super().tick(*args, **kwargs)
        prometheus.BEAT_TICKS.inc()
        try:
            get_redis().set(BEAT_KEY, time.time())
        except redis.RedisError as exc:
            log.warning("beat heartbeat not written: %s", exc)
        return interval
