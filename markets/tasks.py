"""Celery tasks of the markets app: trade retention."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from markets.models import Trade


@shared_task(ignore_result=True)
def purge_trades() -> int:
    """Beat task: delete raw trades older than TRADE_RETENTION_DAYS (candles are kept)."""
    if not settings.TRADE_RETENTION_DAYS:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.TRADE_RETENTION_DAYS)
    deleted, _ = Trade.objects.filter(ts__lt=cutoff).delete()
    return deleted
