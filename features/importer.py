"""OHLCV candle files (ts,open,high,low,close,volume) into Candle rows, e.g. exchange 1-minute klines.

Such files have no taker side, trade count or vwap: buy/sell volume and trades
are stored as 0 and vwap as null, which the features treat as "no information".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction

from core.bulk import upsert
from markets.models import Candle, Market
from markets.trades.file import read_csv
from markets.trades.ticks import parse_ts

HEADER = ["ts", "open", "high", "low", "close", "volume"]
BATCH = 5000
ZERO = Decimal(0)


class CandleFileError(ValueError):
    """A candle file is malformed; the message names the file and line."""


@dataclass
class ImportStats:
    candles: int = 0
    first: datetime | None = None
    last: datetime | None = None


def parse_candle(row: list[str], interval_s: int) -> tuple[datetime, list[Decimal]]:
    if len(row) != len(HEADER):
        raise ValueError(f"expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(row)}")
    try:
        ts = parse_ts(row[0])
    except ValueError as exc:
        raise ValueError(f"bad ts {row[0]!r}: {exc}") from None
    if int(ts.timestamp()) % interval_s or ts.microsecond:
        raise ValueError(f"ts {row[0]} is not the start of a {interval_s}s window")
    try:
        o, h, lo, c, v = (Decimal(x) for x in row[1:])
    except InvalidOperation:
        raise ValueError(f"non-numeric value in {','.join(row[1:])!r}") from None
    if not all(x.is_finite() for x in (o, h, lo, c, v)) or min(o, h, lo, c) <= 0 or v < 0:
        raise ValueError("prices must be positive and volume non-negative")
    if not lo <= min(o, c) <= max(o, c) <= h:
        raise ValueError(f"inconsistent candle: low {lo} / high {h} do not bound open {o} and close {c}")
    return ts, [o, h, lo, c, v]


def read_candles(path: Path, interval_s: int):
    """Batches of (ts, [open, high, low, close, volume]); CandleFileError names file and line."""
    batch, previous = [], None
    for line, row in read_csv(path, HEADER, CandleFileError):
        try:
            ts, values = parse_candle(row, interval_s)
            if previous is not None and ts <= previous:
                raise ValueError(f"ts {row[0]} is not after the previous row's {previous.isoformat()}")
        except ValueError as exc:
            raise CandleFileError(f"{path}:{line}: {exc}") from None
        previous = ts
        batch.append((ts, values))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def import_candles(path: Path, market: Market, interval_s: int) -> ImportStats:
    """Upsert every candle of path as final, all or nothing; re-importing a file is harmless."""
    stats = ImportStats()
    with transaction.atomic():
        _import(path, market, interval_s, stats)
    return stats


def _import(path: Path, market: Market, interval_s: int, stats: ImportStats) -> None:
    for batch in read_candles(path, interval_s):
        upsert(
            Candle,
            [
                Candle(
                    market=market,
                    interval_s=interval_s,
                    start=ts,
                    open=o,
                    high=h,
                    low=lo,
                    close=c,
                    volume=v,
                    buy_volume=ZERO,
                    sell_volume=ZERO,
                    trades=0,
                    vwap=None,
                    final=True,
                )
                for ts, (o, h, lo, c, v) in batch
            ],
            ["market", "interval_s", "start"],
            ["open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades", "vwap"],
        )
        stats.candles += len(batch)
        stats.first = stats.first or batch[0][0]
        stats.last = batch[-1][0]
