"""Celery tasks of the modeling app: thin wrappers around modeling.market_training."""

from __future__ import annotations

import logging

from celery import shared_task

from core import prometheus
from markets.names import get_market
from modeling.market_training import train_horizons
from modeling.training import TrainingError

log = logging.getLogger(__name__)


@shared_task(name="modeling.train_market")
def train_market_task(market: str) -> dict:
    """Scheduled training of one market, every horizon (see modeling.schedule)."""
    try:
        artifacts = train_horizons(get_market(market))
    except TrainingError as exc:
        log.info("training skipped: %s", exc)
        prometheus.TRAINING_RUNS.labels(market, "skipped").inc()
        return {"market": market, "status": "skipped", "reason": str(exc)}
    except Exception:
        prometheus.TRAINING_RUNS.labels(market, "failed").inc()
        raise
    for artifact in artifacts:
        prometheus.TRAINING_RUNS.labels(market, artifact.status).inc()
    return {
        "market": market,
        "status": "trained",
        "models": [{"horizon": a.horizon, "model_id": a.pk, "status": a.status, "reason": a.reason} for a in artifacts],
    }
