"""Order-book windows in the database: settings, upserts, the market's book status, reading back as CSV."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from core import prometheus
from core.bulk import upsert
from markets.book.orderbook import BookBar, BookWindows
from markets.models import BookWindow, Market
from markets.trades.candles import epoch_to_datetime
from markets.trades.file import format_decimal, format_ts

BOOK_HEADER = [
    "ts",
    "bid_price",
    "bid_qty",
    "ask_price",
    "ask_qty",
    "mid",
    "microprice",
    "ofi",
    "spread_tw",
    "imbalance_tw",
    "depth_imbalance",
    "updates",
    "ofi_levels",
]
FEATURES = BOOK_HEADER[1:]  # the BookWindow columns, in BookBar order


def new_windows(market: Market) -> BookWindows:
    """The window aggregator of a market's book: its candle interval, gaps bounded like the candles'."""
    return BookWindows(market.interval_s, max_fill_s=settings.CANDLE_MAX_FILL_S)


def store_windows(market: Market, interval_s: int, bars: Sequence[BookBar]) -> int:
    """Upsert finalized windows in one transaction (a window stored again is overwritten); returns the count."""
    objs = [
        BookWindow(
            market_id=market.pk,
            interval_s=interval_s,
            start=epoch_to_datetime(bar.start),
            **{name: getattr(bar, name) for name in FEATURES},
        )
        for bar in bars
    ]
    with transaction.atomic():
        upsert(BookWindow, objs, conflict=["market", "interval_s", "start"], update=FEATURES)
    prometheus.count(prometheus.BOOK_WINDOWS, market.name, len(objs))
    prometheus.count(prometheus.BOOK_UPDATES, market.name, sum(bar.updates for bar in bars))
    return len(objs)


def record_book_status(
    market: Market,
    *,
    depth: int | None = None,
    updated_at: datetime | None = None,
    checksum_failures: int = 0,
    resyncs: int = 0,
    receive_stamped: int = 0,
) -> None:
    """Update the market's book status: depth, time of the last change (never moved back), counters added."""
    changes = {}
    if depth is not None:
        changes["book_depth"] = depth
    if updated_at is not None:
        changes["book_updated_at"] = Greatest("book_updated_at", updated_at)  # GREATEST skips a NULL
    if checksum_failures:
        changes["book_checksum_failures"] = F("book_checksum_failures") + checksum_failures
    if resyncs:
        changes["book_resyncs"] = F("book_resyncs") + resyncs
    if receive_stamped:
        changes["book_receive_stamped"] = F("book_receive_stamped") + receive_stamped
    if changes:
        Market.objects.filter(pk=market.pk).update(**changes)
    prometheus.count(prometheus.BOOK_CHECKSUM_FAILURES, market.name, checksum_failures)
    prometheus.count(prometheus.BOOK_RESYNCS, market.name, resyncs)
    prometheus.count(prometheus.BOOK_RECEIVE_STAMPED, market.name, receive_stamped)


def stored_bars(market: Market, interval_s: int, start: datetime | None, end: datetime | None) -> Iterator[BookBar]:
    """Stored windows starting in [start, end), in time order, merged into windows of interval_s.

    interval_s is a multiple of the market's interval. A merged window takes the
    top of book, mid, microprice and depth imbalance of its last stored
    sub-window, sums OFI and updates, and averages the time-weighted values
    over its stored sub-windows.
    """
    qs = BookWindow.objects.filter(market=market, interval_s=market.interval_s)
    if start is not None:
        qs = qs.filter(start__gte=start)
    if end is not None:
        qs = qs.filter(start__lt=end)
    rows = qs.order_by("start").values_list("start", *FEATURES)
    bars = (BookBar(int(row[0].timestamp()), *row[1:]) for row in rows.iterator(chunk_size=5000))
    if interval_s == market.interval_s:
        yield from bars
        return
    group: list[BookBar] = []
    for bar in bars:
        if group and bar.start // interval_s != group[0].start // interval_s:
            yield merge_bars(group, interval_s)
            group = []
        group.append(bar)
    if group:
        yield merge_bars(group, interval_s)


def merge_bars(bars: Sequence[BookBar], interval_s: int) -> BookBar:
    """Consecutive windows as one longer window (see stored_bars)."""
    last = bars[-1]
    return BookBar(
        bars[0].start // interval_s * interval_s,
        last.bid_price,
        last.bid_qty,
        last.ask_price,
        last.ask_qty,
        last.mid,
        last.microprice,
        sum(b.ofi for b in bars),
        sum(b.spread_tw for b in bars) / len(bars),
        sum(b.imbalance_tw for b in bars) / len(bars),
        last.depth_imbalance,
        sum(b.updates for b in bars),
        None if any(b.ofi_levels is None for b in bars) else sum(b.ofi_levels for b in bars),
    )


def book_rows(bars: Iterable[BookBar]) -> Iterator[list[str]]:
    """CSV rows under BOOK_HEADER: exact decimals, floats in their shortest exact form."""
    for bar in bars:
        prices = (bar.bid_price, bar.bid_qty, bar.ask_price, bar.ask_qty, bar.mid, bar.microprice)
        floats = (bar.ofi, bar.spread_tw, bar.imbalance_tw, bar.depth_imbalance)
        ts = format_ts(epoch_to_datetime(bar.start))
        ofi_levels = "" if bar.ofi_levels is None else repr(bar.ofi_levels)
        yield [ts, *map(format_decimal, prices), *map(repr, floats), str(bar.updates), ofi_levels]
