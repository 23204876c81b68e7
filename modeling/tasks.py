"""Celery tasks of the modeling app: thin wrappers around modeling.services."""

from __future__ import annotations

import logging

from celery import shared_task

from core import metrics
from markets.services import get_market
from modeling.services import train_market
from modeling.training import TrainingError

log = logging.getLogger(__name__)


@shared_task(name="modeling.train_market")
def train_market_task(market: str) -> dict:
    """Scheduled training of one market (see modeling.schedule)."""
    try:
        artifact = train_market(get_market(market))
    except TrainingError as exc:
        log.info("training skipped: %s", exc)
        metrics.TRAINING_RUNS.labels(market, "skipped").inc()
        return {"market": market, "status": "skipped", "reason": str(exc)}
    except Exception:
        metrics.TRAINING_RUNS.labels(market, "failed").inc()
        raise
    metrics.TRAINING_RUNS.labels(market, artifact.status).inc()
    return {"market": market, "model_id": artifact.pk, "status": artifact.status, "reason": artifact.reason}
