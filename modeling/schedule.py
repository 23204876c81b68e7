"""One celery-beat training task per market, created with the market (deleted with it), editable in the admin."""

from __future__ import annotations

import json

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from markets.models import Market

TASK = "modeling.train_market"


def task_name(market: Market) -> str:
    return f"train {market.name}"


def ensure_training_schedule(market: Market) -> PeriodicTask:
    """The market's training task; an existing one (possibly edited in the admin) is left as it is."""
    every, _ = IntervalSchedule.objects.get_or_create(every=settings.TRAIN_EVERY_S, period=IntervalSchedule.SECONDS)
    task, _ = PeriodicTask.objects.get_or_create(
        name=task_name(market),
        defaults={"task": TASK, "interval": every, "kwargs": json.dumps({"market": market.name})},
    )
    return task


@receiver(post_save, sender=Market, dispatch_uid="modeling.schedule_training")
def on_market_saved(sender, instance: Market, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        ensure_training_schedule(instance)


@receiver(post_delete, sender=Market, dispatch_uid="modeling.unschedule_training")
def on_market_deleted(sender, instance: Market, **kwargs) -> None:
    PeriodicTask.objects.filter(name=task_name(instance), task=TASK).delete()
