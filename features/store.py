"""Feature computation over stored candles, the offline store (FeatureRow) and the online one (Redis).

compute_features is the one entry point for live (a few windows at a candle
close), training and backtest (a whole range): it always loads LOOKBACK - 1
windows of history before the first requested window, so both give identical rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import redis
from django.conf import settings

from cryptopred.bulk import copy_insert
from cryptopred.redis_client import get_redis
from features import definitions
from features.frame import load_frame, window_before
from features.models import FeatureRow
from markets.models import Market

log = logging.getLogger(__name__)


@dataclass
class FeatureBatch:
    """Feature matrix for consecutive windows; rows before the first candle have close None."""

    interval_s: int
    starts: list[datetime]
    names: list[str]
    matrix: np.ndarray  # (windows, features), NaN where history is too short
    closes: list[Decimal | None]
    observed: np.ndarray  # a candle exists for the window (else it carries the previous close)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def close(self) -> np.ndarray:
        return np.array([np.nan if c is None else float(c) for c in self.closes])

    def values(self, i: int) -> dict[str, float | None]:
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.names, self.matrix[i], strict=True)}


def reference_market(market: Market) -> Market | None:
    """The market whose returns feed this one's cross-market features (BTC on the same exchange and quote)."""
    base = settings.FEATURE_REFERENCE_BASE
    if not base or market.base == base:
        return None
    return Market.objects.filter(exchange=market.exchange, base=base, quote=market.quote).first()


def compute_features(market: Market, interval_s: int, first: datetime, last: datetime) -> FeatureBatch:
    """Features of every window first..last of market (point-in-time: each row uses data up to its own close)."""
    history_start = window_before(first, interval_s, definitions.LOOKBACK - 1)
    frame = load_frame(market, interval_s, history_start, last)
    ref = reference_market(market)
    ref_frame = load_frame(ref, interval_s, history_start, last) if ref else None
    columns = definitions.compute(frame, ref_frame)
    skip = definitions.LOOKBACK - 1
    matrix = np.column_stack(list(columns.values()))[skip:] if columns else np.zeros((0, 0))
    return FeatureBatch(
        interval_s, frame.start_datetimes()[skip:], list(columns), matrix, frame.closes[skip:], frame.observed[skip:]
    )


def to_rows(market: Market, batch: FeatureBatch, keep: set[datetime] | None = None) -> list[FeatureRow]:
    """FeatureRow objects (unsaved) for the windows of batch that have a price, optionally only those in keep."""
    return [
        FeatureRow(
            market=market,
            interval_s=batch.interval_s,
            start=start,
            version=definitions.VERSION,
            values=batch.values(i),
            close=batch.closes[i],
        )
        for i, start in enumerate(batch.starts)
        if batch.closes[i] is not None and (keep is None or start in keep)
    ]


def save_rows(rows: list[FeatureRow], replace: bool = True) -> list[FeatureRow]:
    """Store rows; replace=True overwrites stored windows (amended candle, replay), else keeps them."""
    copy_insert(FeatureRow, rows, ["market", "interval_s", "version", "start"], ["values", "close"] if replace else ())
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
            market=market, interval_s=interval_s, version=definitions.VERSION, start__gte=first, start__lte=last
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
    stored = set(
        FeatureRow.objects.filter(
            market=market, interval_s=interval_s, version=definitions.VERSION, start__gte=first, start__lte=until
        ).values_list("start", flat=True)
    )
    if not stored:
        return []
    return save_rows(to_rows(market, compute_features(market, interval_s, min(stored), max(stored)), keep=stored))


def dependents(market: Market) -> list[Market]:
    """The markets whose cross-market features read this one's returns."""
    if market.base != settings.FEATURE_REFERENCE_BASE:
        return []
    return list(Market.objects.filter(exchange=market.exchange, quote=market.quote).exclude(pk=market.pk))


def latest_key(market: Market, interval_s: int) -> str:
    return f"cryptopred:features:latest:{market.name}:{interval_s}"


def publish_latest(row: FeatureRow) -> None:
    """Keep the newest vector per market in Redis for inference and the UI."""
    payload = {
        "start": row.start.isoformat().replace("+00:00", "Z"),
        "version": row.version,
        "close": str(row.close),
        "values": row.values,
    }
    try:
        get_redis().set(latest_key(row.market, row.interval_s), json.dumps(payload))
    except redis.RedisError as exc:  # the stored row is what matters; the cache catches up at the next close
        log.warning("latest feature vector of %s not cached: %s", row.market, exc)


def latest_vector(market: Market, interval_s: int) -> dict | None:
    raw = get_redis().get(latest_key(market, interval_s))
    return None if raw is None else json.loads(raw)
