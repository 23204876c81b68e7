"""The feature store: FeatureRow rows, read by inference, training and backtests.

The values come from features.engine, the one computation for live, training and backtest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.bulk import upsert
from features import definitions
from features.engine import FeatureBatch, compute_features, feature_version
from features.models import FeatureRow
from markets.models import Market


def to_rows(market: Market, batch: FeatureBatch, keep: set[datetime] | None = None) -> list[FeatureRow]:
    """FeatureRow objects (unsaved) for the windows of batch that have a price, optionally only those in keep."""
    return [
        FeatureRow(
            market=market,
            interval_s=batch.interval_s,
            start=start,
            version=batch.version,
            values=batch.values(i),
            close=batch.closes[i],
            mid=batch.mids[i] if batch.mids is not None else None,
        )
        for i, start in enumerate(batch.starts)
        if batch.closes[i] is not None and (keep is None or start in keep)
    ]


def save_rows(rows: list[FeatureRow], replace: bool = True) -> list[FeatureRow]:
    """Store rows; replace=True overwrites stored windows (amended candle, replay), else keeps them."""
    upsert(
        FeatureRow, rows, ["market", "interval_s", "version", "start"], ["values", "close", "mid"] if replace else ()
    )
    return rows


def materialize(
    market: Market, interval_s: int, first: datetime, last: datetime, replace: bool = False
) -> FeatureBatch:
    """Compute the rows of first..last and store those not stored yet (all of them if replace); returns the batch.

    Without replace, windows already in the store (written by the live
    pipeline with the same feature version, hence the same values) are not
    rewritten: a scheduled training then costs no writes.
    """
    batch = compute_features(market, interval_s, first, last)
    keep = None
    if not replace:
        stored = FeatureRow.objects.filter(
            market=market, interval_s=interval_s, version=batch.version, start__gte=first, start__lte=last
        ).values_list("start", flat=True)
        keep = set(batch.starts) - set(stored)
    save_rows(to_rows(market, batch, keep), replace=replace)
    return batch


def refresh(market: Market, interval_s: int, first: datetime, last: datetime) -> list[FeatureRow]:
    """Recompute the stored rows that read any window first..last, after late trades amended those candles.

    A row reads LOOKBACK windows up to its own, and a reference market's
    returns one window later still, so the rows of first .. last + LOOKBACK
    windows are recomputed; windows not stored yet are left to their candle close.
    """
    until = last + timedelta(seconds=interval_s * definitions.LOOKBACK)
    version = feature_version(market, interval_s)
    stored = set(
        FeatureRow.objects.filter(
            market=market, interval_s=interval_s, version=version, start__gte=first, start__lte=until
        ).values_list("start", flat=True)
    )
    if not stored:
        return []
    batch = compute_features(market, interval_s, min(stored), max(stored), version)
    return save_rows(to_rows(market, batch, keep=stored))
