"""Plain, independent reference computations for the markets tests, and a stream runner harness."""

from __future__ import annotations

import csv
import gzip
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.db import connections

from markets.streams.runner import StreamRunner

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
GEMINI = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
KRAKEN_BTCUSDT = SAMPLE / "kraken_BTCUSDT_trades_2023-11-17_to_2023-11-19.csv.gz"


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


def run_until(runner: StreamRunner, done: Callable[[], object], timeout: float = 60.0) -> None:
    """Run the stream in a thread until done() holds (or time runs out)."""

    def target():
        try:
            runner.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.stopping.set()
    thread.join(10)
    assert not thread.is_alive()
