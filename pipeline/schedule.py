"""The beat schedule in one place: the fixed tasks and one training task per market.

Each entry is a django-celery-beat PeriodicTask row, created when missing and
otherwise left as the admin edited it (disable a task rather than delete it:
a deleted one is created again). The beat scheduler calls sync() when it
starts and every minute, so a new market gets its training task without a restart.
"""

from __future__ import annotations

import json

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from markets.models import Market

FIXED = [
    ("markets: revive streams", "pipeline.tasks.ensure_streams", 10),
    ("markets: purge old trades", "markets.tasks.purge_trades", 3600),
    ("monitoring: drift check", "monitoring.check_drift", 300),
]
TRAIN_TASK = "modeling.train_market"


def training_task_name(market: Market) -> str:
    return f"train {market.name}"


def _ensure(name: str, task: str, every_s: int, kwargs: dict | None = None) -> bool:
    """The task named name exists (True if it was created now)."""
    if PeriodicTask.objects.filter(name=name).exists():
        return False
    every, _ = IntervalSchedule.objects.get_or_create(every=every_s, period=IntervalSchedule.SECONDS)
    _, created = PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "kwargs": json.dumps(kwargs or {})}
    )
    return created


def sync() -> int:
    """Create missing entries, drop the training tasks of deleted markets; returns how many were created."""
    created = sum(_ensure(name, task, every) for name, task, every in FIXED)
    names = []
    for market in Market.objects.all():
        names.append(training_task_name(market))
        created += _ensure(names[-1], TRAIN_TASK, settings.TRAIN_EVERY_S, {"market": market.name})
    PeriodicTask.objects.filter(task=TRAIN_TASK).exclude(name__in=names).delete()
    return created
