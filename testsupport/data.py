"""The bundled real data files the tests replay, and plain, independent reference computations over them."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
GEMINI = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"  # 25,222 trades, 8,638 windows of 10 s
KRAKEN_BTCUSDT = SAMPLE / "kraken_BTCUSDT_trades_2023-11-17_to_2023-11-19.csv.gz"
KRAKEN_ETH = SAMPLE / "kraken_ETHUSD_trades_2022-03-20.csv.gz"  # 1,000 real trades over 110 minutes
BINANCE_ETH_TRADES = SAMPLE / "binance_ETHUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_BTC_TRADES = SAMPLE / "binance_BTCUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_ETH_1M = SAMPLE / "binance_ETHUSDT_ohlcv1m_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_BTC_1M = SAMPLE / "binance_BTCUSDT_ohlcv1m_2024-08-08_to_2024-08-09.csv.gz"
BITSTAMP_BOOK = SAMPLE / "bitstamp_BTCUSD_book20_2015-05-01_0000-0300.csv.gz"
BITSTAMP_TRADES = SAMPLE / "bitstamp_BTCUSD_trades_2015-05-01_0000-0300.csv.gz"


def read_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def first_hours(source: Path, hours: float, path: Path) -> Path:
    """The trades of source's first hours, as a trades file of its own (gzip) at path."""
    rows = read_rows(source)
    end = datetime.fromisoformat(rows[0]["ts"]) + timedelta(hours=hours)
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if datetime.fromisoformat(r["ts"]) < end)
    return path


def split_trades(path: Path, sizes: list[int], directory: Path) -> list[Path]:
    """Consecutive slices of a real trades file (header repeated), sizes in rows."""
    with gzip.open(path, "rt") as f:
        header, *rows = f.readlines()
    parts, offset = [], 0
    for i, size in enumerate(sizes):
        part = directory / f"part{i}.csv"
        part.write_text(header + "".join(rows[offset : offset + size]))
        parts.append(part)
        offset += size
    return parts


def reference_candles(rows: list[dict], interval: int) -> list[list[str]]:
    """Straightforward OHLCV per window in file order, gaps filled flat at the previous close."""
    windows: dict[int, list[dict]] = {}
    for row in rows:
        second = int(datetime.fromisoformat(row["ts"]).timestamp())
        windows.setdefault(second - second % interval, []).append(row)
    out = []
    start, last = min(windows), max(windows)
    close = None
    for t in range(start, last + interval, interval):
        trades = windows.get(t, [])
        prices = [Decimal(r["price"]) for r in trades]
        if trades:
            o, h, lo, close = prices[0], max(prices), min(prices), prices[-1]
            volume = sum(Decimal(r["qty"]) for r in trades)
        else:
            o = h = lo = close
            volume = Decimal(0)
        ts = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append([ts, *(f"{v.normalize():f}" for v in (o, h, lo, close, volume)), str(len(trades))])
    return out
