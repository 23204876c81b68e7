"""The one mapping between the aggregator's Bar and the stored Candle row, both ways."""

from __future__ import annotations

from decimal import Decimal

from markets.models import Candle, Market
from markets.trades.candles import Bar, epoch_to_datetime

COUNTED = ("open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades")


def candle_from_bar(
    market: Market, bar: Bar, interval_s: int | None = None, final: bool = True, amended: int = 0
) -> Candle:
    """An unsaved Candle of bar, at the market's own interval unless interval_s says otherwise."""
    return Candle(
        market=market,
        interval_s=interval_s or market.interval_s,
        start=epoch_to_datetime(bar.start),
        **{name: getattr(bar, name) for name in COUNTED},
        vwap=bar.vwap,
        final=final,
        amended=amended,
    )


def bar_from_candle(candle: Candle) -> Bar:
    """A stored candle as a Bar that merges like the aggregator's own (its notional restored from the VWAP)."""
    bar = Bar(int(candle.start.timestamp()))
    for name in COUNTED:
        setattr(bar, name, getattr(candle, name))
    bar.notional = candle.vwap * candle.volume if candle.vwap is not None else Decimal(0)
    return bar
