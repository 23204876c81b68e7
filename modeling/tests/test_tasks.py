"""Scheduled training: one editable beat task per market, run by a real Celery worker."""

from __future__ import annotations

import json

from django.conf import settings
from django_celery_beat.models import PeriodicTask

from modeling.models import ModelArtifact
from modeling.tasks import train_market_task
from modeling.tests.conftest import ETH
from pipeline import schedule


def test_every_market_gets_a_training_schedule(eth):
    assert schedule.sync() >= 1
    task = PeriodicTask.objects.get(name=f"train {ETH}")
    assert task.task == "modeling.train_market" and task.enabled
    assert json.loads(task.kwargs) == {"market": ETH}
    assert task.interval.every == settings.TRAIN_EVERY_S == 900 and task.interval.period == "seconds"
    # Edited in the admin: left alone on later saves.
    task.interval.every = 60
    task.interval.save()
    assert schedule.sync() == 0
    assert PeriodicTask.objects.get(name=f"train {ETH}").interval.every == 60
    eth.delete()
    schedule.sync()
    assert not PeriodicTask.objects.filter(name=f"train {ETH}").exists()  # gone with its market


def test_training_task_trains_every_horizon_on_a_worker(celery_worker_app, transactional_db, edge):
    result = train_market_task.delay(ETH).get(timeout=300)
    artifacts = [ModelArtifact.objects.get(pk=m["model_id"]) for m in result["models"]]
    assert result == {
        "market": ETH,
        "status": "trained",
        "models": [{"horizon": a.horizon, "model_id": a.pk, "status": a.status, "reason": a.reason} for a in artifacts],
    }
    assert [a.horizon for a in artifacts] == [1, 3, 6]
    assert artifacts[0].status == "active"  # the planted edge (see conftest)


def test_training_task_without_data_is_skipped(celery_worker_app, transactional_db):
    from markets.names import get_or_create_market

    get_or_create_market("kraken:ETH-USD")
    result = train_market_task.delay("kraken:ETH-USD").get(timeout=60)
    assert result["status"] == "skipped" and "no 10s candles stored yet" in result["reason"]
