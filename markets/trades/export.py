"""Stored candles and trades as CSV rows (ts first, exact decimals)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings

from markets.models import Candle, Market, Trade
from markets.trades.candles import Bar, epoch_to_datetime, fill_gaps, merge
from markets.trades.file import format_decimal, format_ts
from markets.trades.stored import bar_from_candle

CANDLE_HEADER = ["ts", "open", "high", "low", "close", "volume", "trades"]
TRADE_HEADER = ["ts", "price", "qty", "side", "trade_id"]


def candle_bars(market: Market, interval_s: int, start: datetime | None, end: datetime | None) -> list[Bar]:
    """Every window from the first traded one to the last traded one in [start, end), empty ones included.

    Gaps longer than CANDLE_MAX_FILL_S stay gaps: the aggregator started a new series there.
    """
    qs = Candle.objects.filter(market=market, interval_s=market.interval_s)
    if start is not None:
        qs = qs.filter(start__gte=start)
    if end is not None:
        qs = qs.filter(start__lt=end)
    traded = qs.filter(trades__gt=0).order_by("start").values_list("start", flat=True)
    first, last = traded.first(), traded.last()
    if first is None:
        return []
    candles = qs.filter(start__gte=first, start__lte=last).order_by("start")
    max_fill = settings.CANDLE_MAX_FILL_S  # a longer gap is a new series: not filled here either
    bars = fill_gaps(
        (bar_from_candle(c) for c in candles.iterator(chunk_size=5000)), market.interval_s, max_fill_s=max_fill
    )
    if interval_s == market.interval_s:
        return bars
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bar.start // interval_s * interval_s, []).append(bar)
    return fill_gaps((merge(group, start) for start, group in groups.items()), interval_s, max_fill_s=max_fill)


def candle_rows(bars: list[Bar]) -> Iterator[list[str]]:
    for bar in bars:
        prices = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        yield [format_ts(epoch_to_datetime(bar.start)), *map(format_decimal, prices), str(bar.trades)]


def trade_rows(market: Market, start: datetime | None, end: datetime | None) -> Iterator[list[str]]:
    """Stored trades in exchange order (trade id)."""
    qs = Trade.objects.filter(market=market)
    if start is not None:
        qs = qs.filter(ts__gte=start)
    if end is not None:
        qs = qs.filter(ts__lt=end)
    rows = qs.order_by("trade_id").values_list("ts", "price", "qty", "side", "trade_id")
    for ts, price, qty, side, trade_id in rows.iterator(chunk_size=10_000):
        yield [format_ts(ts, micro=True), format_decimal(price), format_decimal(qty), side, str(trade_id)]
