"""Feature computation over stored candles: the one engine for live, training and backtest.

compute_features serves a live candle close (a few windows) and training or a
backtest (a whole range) alike: it always loads LOOKBACK - 1 windows of history
before the first requested window, so both give identical rows.

The feature set is per market and interval (feature_version): BOOK_VERSION
where the market has order-book windows at that interval, else VERSION; the
price a market predicts follows it (market_target): the mid where it has a
book, else the last trade's close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
from django.conf import settings

from features import definitions
from features.frame import load_book_frame, load_frame, window_before
from markets.models import BookWindow, Market

TARGETS = ("close", "mid")  # the price a model predicts: the last trade's close, or the book's mid


@dataclass
class FeatureBatch:
    """Feature matrix for consecutive windows; rows before the first candle have close None.

    mids: the book's mid at each window end (BOOK_VERSION), None without a book window.
    """

    interval_s: int
    starts: list[datetime]
    names: list[str]
    matrix: np.ndarray  # (windows, features), NaN where history is too short
    closes: list[Decimal | None]
    observed: np.ndarray  # a candle exists for the window (else it carries the previous close)
    version: str = definitions.VERSION
    mids: list[Decimal | None] | None = None

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def close(self) -> np.ndarray:
        return np.array([np.nan if c is None else float(c) for c in self.closes])

    @property
    def mid(self) -> np.ndarray:
        return np.array([np.nan if m is None else float(m) for m in (self.mids or [None] * len(self))])

    def price(self, target: str) -> np.ndarray:
        """The series a target predicts: the closes, or the mids."""
        return self.mid if target == "mid" else self.close

    def values(self, i: int) -> dict[str, float | None]:
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.names, self.matrix[i], strict=True)}


def reference_market(market: Market) -> Market | None:
    """The market whose returns feed this one's cross-market features (BTC on the same exchange and quote)."""
    base = settings.FEATURE_REFERENCE_BASE
    if not base or market.base == base:
        return None
    return Market.objects.filter(exchange=market.exchange, base=base, quote=market.quote).first()


def feature_version(market: Market, interval_s: int | None = None) -> str:
    """The market's feature set at interval_s: BOOK_VERSION once it has book windows there, else VERSION."""
    interval_s = interval_s or market.interval_s
    has_book = BookWindow.objects.filter(market=market, interval_s=interval_s).exists()
    return definitions.BOOK_VERSION if has_book else definitions.VERSION


def version_target(version: str) -> str:
    """The price predicted with a feature set: the mid where the book is known, else the close."""
    return "mid" if version == definitions.BOOK_VERSION else "close"


def market_target(market: Market, interval_s: int | None = None) -> str:
    return version_target(feature_version(market, interval_s))


def compute_features(
    market: Market, interval_s: int, first: datetime, last: datetime, version: str | None = None
) -> FeatureBatch:
    """Features of every window first..last of market (point-in-time: each row uses data up to its own close).

    version defaults to the market's (feature_version); BOOK_VERSION reads the
    market's book windows beside its candles.
    """
    version = version or feature_version(market, interval_s)
    if version not in definitions.VERSIONS:
        raise ValueError(f"unknown feature-set version {version!r} (known: {', '.join(definitions.VERSIONS)})")
    history_start = window_before(first, interval_s, definitions.LOOKBACK - 1)
    frame = load_frame(market, interval_s, history_start, last)
    ref = reference_market(market)
    ref_frame = load_frame(ref, interval_s, history_start, last) if ref else None
    book = load_book_frame(market, interval_s, history_start, last) if version == definitions.BOOK_VERSION else None
    columns = definitions.compute(frame, ref_frame, book)
    skip = definitions.LOOKBACK - 1
    matrix = np.column_stack(list(columns.values()))[skip:] if columns else np.zeros((0, 0))
    return FeatureBatch(
        interval_s,
        frame.start_datetimes()[skip:],
        list(columns),
        matrix,
        frame.closes[skip:],
        frame.observed[skip:],
        version,
        book.mids[skip:] if book is not None else None,
    )


def dependents(market: Market) -> list[Market]:
    """The markets whose cross-market features read this one's returns."""
    if market.base != settings.FEATURE_REFERENCE_BASE:
        return []
    return list(Market.objects.filter(exchange=market.exchange, quote=market.quote).exclude(pk=market.pk))
