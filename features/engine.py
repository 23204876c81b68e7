"""Feature computation over stored candles: the one engine for live, training and backtest.

compute_features serves a live candle close (a few windows) and training or a
backtest (a whole range) alike: it always loads LOOKBACK - 1 windows of history
before the first requested window, so both give identical rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
from django.conf import settings

from features import definitions
from features.frame import load_frame, window_before
from markets.models import Market


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


def dependents(market: Market) -> list[Market]:
    """The markets whose cross-market features read this one's returns."""
    if market.base != settings.FEATURE_REFERENCE_BASE:
        return []
    return list(Market.objects.filter(exchange=market.exchange, quote=market.quote).exclude(pk=market.pk))
