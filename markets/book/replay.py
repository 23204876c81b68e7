"""Replay an order-book file into per-window book features (independent of the market's trades)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings

from markets.book.file import MAX_LEVELS, BookFileError, read_book
from markets.book.orderbook import BookBar, BookTop, OrderBook
from markets.book.store import new_windows, record_book_status, store_windows
from markets.models import Market

BATCH = 2_000  # finalized windows per transaction (5.5 hours of 10-s windows)


@dataclass
class BookReplayStats:
    snapshots: int = 0  # book states read (an L2 snapshot or a top-of-book row)
    levels: int = 0  # levels read, both sides
    changed: int = 0  # levels that differ from the previous snapshot: what an incremental feed would send
    windows: int = 0  # windows stored
    depth: int = 0  # most levels per side in one snapshot
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    seconds: float = 0.0

    def summary(self, market: Market) -> str:
        rate = self.levels / self.seconds if self.seconds else 0.0
        return (
            f"{market.name}: book snapshots {self.snapshots}, levels {self.levels} ({self.changed} changed),"
            f" windows {self.windows}, {rate:,.0f} levels/s"
        )


def replay_book_windows(
    path: Path,
    market: Market,
    progress: Callable[[int], None] | None = None,
    on_book: Callable[[OrderBook], None] | None = None,
    batch: int = BATCH,
    speed: float | None = None,
    on_commit: Callable[[], None] | None = None,
) -> BookReplayStats:
    """Store the book windows of a top-of-book or L2 file for market (at market.interval_s).

    Each snapshot replaces the book (a top-of-book row is a one-level book), the
    book's top feeds the market's BookWindows, and finalized windows are upserted
    `batch` at a time, each batch in one transaction; the last window is
    finalized at the end. A malformed row raises BookFileError (FILE:LINE): the
    batches stored before it stay, nothing of the batch being built is written
    (windows are finalized only when a later snapshot or the end of the file is
    read).
    Windows are recomputed from this file alone, so a replay of the same file
    gives the same rows, whatever else (trades, candles) the market holds.
    on_book, if given, sees the book after each snapshot (e.g. to checksum it).
    progress gets the bytes of the file read so far.
    speed None reads as fast as possible; a factor delivers each snapshot at that
    multiple of the pace of its timestamps (like a live feed) and stores each
    window as soon as it is final, calling on_commit after each store.
    """
    stats = BookReplayStats()
    started = time.perf_counter()
    book = OrderBook(MAX_LEVELS)
    windows = new_windows(market)
    levels = settings.BOOK_FEATURE_LEVELS
    pending: list[BookBar] = []
    snap = None
    clock: tuple[float, float] | None = None  # paced: (first event time, wall start)
    if speed is not None:
        batch = 1
    for snap in read_book(path, progress):
        if speed is not None:
            clock = clock or (snap.ts.timestamp(), time.monotonic())
            if (wait := clock[1] + (snap.ts.timestamp() - clock[0]) / speed - time.monotonic()) > 0:
                time.sleep(wait)
        stats.changed += book.snapshot(snap.bids, snap.asks)
        if on_book is not None:
            on_book(book)
        try:
            pending += windows.observe(snap.ts, BookTop.from_book(book, levels))
        except ValueError as exc:  # cannot happen for a file read in time order; named all the same
            raise BookFileError(f"{path}:{snap.line}: {exc}") from None
        stats.snapshots += 1
        stats.levels += len(snap.bids) + len(snap.asks)
        stats.depth = max(stats.depth, len(snap.bids), len(snap.asks))
        if stats.first_ts is None:
            stats.first_ts = snap.ts
        while len(pending) >= batch:
            stats.windows += store_windows(market, market.interval_s, pending[:batch])
            del pending[:batch]
            if speed is not None:  # a live feed's book moves on with every window
                record_book_status(market, depth=stats.depth, updated_at=snap.ts)
            if on_commit is not None:
                on_commit()
    pending += windows.close_all()
    stats.windows += store_windows(market, market.interval_s, pending)
    if on_commit is not None:
        on_commit()
    if snap is not None:
        stats.last_ts = snap.ts
        record_book_status(market, depth=stats.depth, updated_at=snap.ts)
    stats.seconds = time.perf_counter() - started
    return stats
