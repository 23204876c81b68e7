"""Celery tasks of the monitoring app: the drift check (beat, see pipeline/schedule.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from markets.models import Market
from monitoring import drift
from monitoring.models import DriftReport

log = logging.getLogger(__name__)
KEEP_REPORTS = timedelta(days=7)


@shared_task(name="monitoring.check_drift", ignore_result=True)
def check_drift() -> dict:
    """Drift report of every enabled market; reports older than a week are deleted."""
    found = {}
    for market in Market.objects.filter(enabled=True):
        try:
            report = drift.check(market)
        except Exception:
            log.exception("%s: drift check failed", market)
            continue
        found[market.name] = report.detail or "no drift"
    DriftReport.objects.filter(computed_at__lt=timezone.now() - KEEP_REPORTS).delete()
    return found
