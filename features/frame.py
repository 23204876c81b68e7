"""Candles and order-book windows of one market on a regular window grid, the input of every feature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from markets.book.store import FEATURES as BOOK_FIELDS
from markets.models import BookWindow, Candle, Market

COLUMNS = ("open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades", "vwap")


@dataclass
class CandleFrame:
    """Windows first..last (inclusive) every interval_s seconds.

    A window without a finalized candle is "no trade": open/high/low/close carry
    the previous close, volumes and trade count are 0, vwap is NaN. Before the
    first known candle every price is NaN.
    """

    interval_s: int
    starts: np.ndarray  # epoch seconds, int64
    columns: dict[str, np.ndarray]  # float64 arrays named as COLUMNS
    closes: list[Decimal | None]  # exact closes, for the stored rows
    observed: np.ndarray  # bool: a candle exists for the window

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def start_datetimes(self) -> list[datetime]:
        return [datetime_from_epoch(s) for s in self.starts]


def to_epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def load_frame(market: Market, interval_s: int, first: datetime, last: datetime) -> CandleFrame:
    """Finalized candles of market on the grid first..last; values before first come from the last earlier candle."""
    first_s, last_s = to_epoch(first), to_epoch(last)
    n = max(0, (last_s - first_s) // interval_s + 1)
    candles = Candle.objects.filter(market=market, interval_s=interval_s, final=True)
    rows = list(candles.filter(start__gte=first, start__lte=last).order_by("start").values_list("start", *COLUMNS))
    seed = candles.filter(start__lt=first).order_by("-start").values_list("close", flat=True).first()

    observed = np.zeros(n, dtype=bool)
    raw = {name: np.full(n, np.nan) for name in COLUMNS}
    exact: list[Decimal | None] = [None] * n
    if rows:
        index = np.array([(to_epoch(r[0]) - first_s) // interval_s for r in rows], dtype=np.int64)
        values = np.array([r[1:] for r in rows], dtype=float)  # Decimal -> float, None -> nan
        observed[index] = True
        for j, name in enumerate(COLUMNS):
            raw[name][index] = values[:, j]
        for i, r in zip(index, rows, strict=True):
            exact[i] = r[4]

    # Index of the latest observed window at or before each window (-1: only the seed, if any).
    last_seen = np.maximum.accumulate(np.where(observed, np.arange(n), -1)) if n else np.zeros(0, dtype=np.int64)
    seed_close = np.nan if seed is None else float(seed)
    carried = np.where(last_seen >= 0, raw["close"][np.maximum(last_seen, 0)], seed_close)
    columns = {}
    for name in ("open", "high", "low", "close"):
        columns[name] = np.where(observed, raw[name], carried)
    for name in ("volume", "buy_volume", "sell_volume", "trades"):
        columns[name] = np.where(observed, raw[name], 0.0)
    columns["vwap"] = np.where(observed, raw["vwap"], np.nan)
    closes = [exact[j] if j >= 0 else seed for j in last_seen.tolist()]
    starts = first_s + interval_s * np.arange(n, dtype=np.int64)
    return CandleFrame(interval_s, starts, columns, closes, observed)


def window_before(dt: datetime, interval_s: int, windows: int) -> datetime:
    return dt - timedelta(seconds=interval_s * windows)


def datetime_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


BOOK_COLUMNS = tuple(BOOK_FIELDS)  # the BookWindow columns a frame carries


@dataclass
class BookFrame:
    """Stored book windows (markets.models.BookWindow) of one market on the same grid as a CandleFrame.

    Row i is the book as of the end of window i (top of book, mid, microprice,
    depth imbalance) and the window's OFI, time-weighted spread and L1
    imbalance and update count. A window without a stored book window is NaN
    everywhere (no carrying: the book windows already carry quiet windows, so
    a missing one means the book was not known then).
    """

    interval_s: int
    starts: np.ndarray
    columns: dict[str, np.ndarray]
    mids: list[Decimal | None]  # exact mids, for the stored rows and the mid target
    observed: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def load_book_frame(market: Market, interval_s: int, first: datetime, last: datetime) -> BookFrame:
    """Book windows of market on the grid first..last (point in time: row i reads book window i only)."""
    first_s, last_s = to_epoch(first), to_epoch(last)
    n = max(0, (last_s - first_s) // interval_s + 1)
    rows = list(
        BookWindow.objects.filter(market=market, interval_s=interval_s, start__gte=first, start__lte=last)
        .order_by("start")
        .values_list("start", *BOOK_COLUMNS)
    )
    observed = np.zeros(n, dtype=bool)
    columns = {name: np.full(n, np.nan) for name in BOOK_COLUMNS}
    mids: list[Decimal | None] = [None] * n
    if rows:
        index = np.array([(to_epoch(r[0]) - first_s) // interval_s for r in rows], dtype=np.int64)
        values = np.array([r[1:] for r in rows], dtype=float)
        observed[index] = True
        for j, name in enumerate(BOOK_COLUMNS):
            columns[name][index] = values[:, j]
        mid_at = BOOK_COLUMNS.index("mid") + 1
        for i, r in zip(index.tolist(), rows, strict=True):
            mids[i] = r[mid_at]
    starts = first_s + interval_s * np.arange(n, dtype=np.int64)
    return BookFrame(interval_s, starts, columns, mids, observed)
