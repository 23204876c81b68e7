"""celery-beat scheduler that leaves a heartbeat in Redis for /healthz."""

import logging
import time

import redis
from django_celery_beat.schedulers import DatabaseScheduler

from cryptopred.redis_client import get_redis

BEAT_KEY = "cryptopred:beat:last_tick"
log = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):
    """The django-celery-beat database scheduler, plus a last-tick timestamp."""

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        try:
            get_redis().set(BEAT_KEY, time.time())
        except redis.RedisError as exc:
            log.warning("beat heartbeat not written: %s", exc)
        return interval
