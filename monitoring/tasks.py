"""Celery tasks of the monitoring app: the drift check (beat, see pipeline/schedule.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core import horizons
from markets.models import Market
from monitoring import drift
from monitoring.models import DriftReport

log = logging.getLogger(__name__)
KEEP_REPORTS = timedelta(days=7)


@shared_task(name="monitoring.check_drift", ignore_result=True)
def check_drift() -> dict:
    """Drift report of every enabled market at each horizon; reports older than a week are deleted."""
    found = {}
    for market in Market.objects.filter(enabled=True):
        for horizon in horizons.configured():
            try:
                report = drift.check(market, horizon)
            except Exception:
                log.exception("%s: drift check at horizon %s failed", market, horizon)
                continue
            found[f"{market.name} +{horizon}"] = report.detail or "no drift"
    DriftReport.objects.filter(computed_at__lt=timezone.now() - KEEP_REPORTS).delete()
    return found
