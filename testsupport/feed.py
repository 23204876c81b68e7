"""Real data fed through the live write path: management commands, the live ingestor and step, a stream runner."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import connections

from markets.book.file import MAX_LEVELS, read_book
from markets.book.orderbook import BookTop, OrderBook
from markets.book.store import new_windows, store_windows
from markets.models import Market
from markets.streams.runner import StreamRunner
from markets.trades.file import read_trades
from markets.trades.ingest import Ingestor
from pipeline.runner import Guard
from pipeline.step import MarketStep, StepStats


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def stream(path: Path, market: Market, batch_size: int) -> list[StepStats]:
    """Feed a trades file to the live ingestor in small batches, closing windows by event time.

    The pipeline step runs after each commit, as on a live stream; returns what each run did.
    """
    step, guard = MarketStep(market), Guard(market)
    runs: list[StepStats] = []
    ingestor = Ingestor(market, on_commit=lambda: runs.append(guard.run(step)))
    for batch in read_trades(path, batch_size=batch_size):
        ingestor.ingest(batch, close_until=batch[-1].ts.timestamp())
    ingestor.flush()
    return runs


def stream_with_book(book_path: Path, trades_path: Path, market: Market, every_s: int) -> list[StepStats]:
    """Feed a book file and a trades file as a live market with a book would get them, then run the step.

    A clock advances every_s seconds of event time; at each tick the trades and
    book snapshots stamped before it are applied, the candles and book windows
    that ended by it are finalized and stored (as a live stream does, on the
    same clock), and the pipeline step runs. Returns what each run did.
    """
    step, guard = MarketStep(market), Guard(market)
    ingestor = Ingestor(market)
    ticks = [t for batch in read_trades(trades_path) for t in batch]
    snapshots = iter(read_book(book_path))
    book, windows, levels = OrderBook(MAX_LEVELS), new_windows(market), settings.BOOK_FEATURE_LEVELS
    pending = next(snapshots, None)
    first = min(ticks[0].ts, pending.ts).timestamp()
    runs: list[StepStats] = []
    clock, i = first // every_s * every_s + every_s, 0
    while pending is not None or i < len(ticks):
        bars = []
        while pending is not None and pending.ts.timestamp() < clock:
            book.snapshot(pending.bids, pending.asks)
            bars += windows.observe(pending.ts, BookTop.from_book(book, levels))
            pending = next(snapshots, None)
        bars += windows.close_until(clock)
        store_windows(market, market.interval_s, bars)
        batch = []
        while i < len(ticks) and ticks[i].ts.timestamp() < clock:
            batch.append(ticks[i])
            i += 1
        ingestor.ingest(batch, close_until=clock)
        runs.append(guard.run(step))
        clock += every_s
    return runs


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
