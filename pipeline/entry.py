"""The entry points that feed a market: each ingests trades and runs the pipeline step after its commits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from markets.book.replay import BookReplayStats, replay_book_windows
from markets.models import Market
from markets.streams.backfill import backfill
from markets.streams.runner import StreamRunner
from markets.trades.ingest import IngestStats
from markets.trades.replay import replay_trades
from pipeline.models import StepStatus
from pipeline.runner import Guard, StepThread
from pipeline.step import MarketStep


class Inline:
    """Runs the step in the ingesting thread after each commit: for replays and backfills, which have
    no exchange socket to keep reading, so each batch is fully processed before the next."""

    def __init__(self, market: Market):
        self.step = MarketStep(market)
        self.guard = Guard(market)

    def __call__(self) -> None:
        self.guard.run(self.step)


def replay(
    path: Path, market: Market, speed: float | None = None, progress: Callable[[int], None] | None = None
) -> IngestStats:
    """Replay a trades file with features, predictions and scoring.

    At max speed the step runs after each batch; a paced replay behaves like a
    live stream, with the step in its own thread (predicting every window: the
    clock is the file's). A last run at the end catches up on what is left.
    A failing step is logged and recorded (StepStatus), never raised: stats.step_error says it failed last.
    """
    inline = Inline(market)
    if speed is None:
        stats = replay_trades(path, market, None, progress, on_commit=inline)
    else:
        thread = StepThread(market, skip_stale=False).start()
        try:
            stats = replay_trades(path, market, speed, progress, on_commit=thread.wake)
        finally:
            thread.stop()
    inline()
    stats.step_error = inline.guard.last_error
    return stats


def replay_book(
    path: Path, market: Market, progress: Callable[[int], None] | None = None, speed: float | None = None
) -> BookReplayStats:
    """Replay a book file (top of book or L2) into the market's book windows, then run the step.

    Paced (speed a factor of real time), the step runs in its own thread after each stored window, as for
    a paced trades replay: a second paced replay of the same market's trades makes a live market of both.
    """
    inline = Inline(market)
    if speed is None:
        stats = replay_book_windows(path, market, progress)
    else:
        thread = StepThread(market, skip_stale=False).start()
        try:
            stats = replay_book_windows(path, market, progress, speed=speed, on_commit=thread.wake)
        finally:
            thread.stop()
    inline()
    return stats


def backfill_market(
    market: Market, since: datetime, progress: Callable[[float, IngestStats], None] | None = None
) -> IngestStats:
    """Backfill with the step after each commit and a last run at the end; stats.step_error as for replay."""
    inline = Inline(market)
    stats = backfill(market, since, progress, on_commit=inline)
    inline()
    stats.step_error = inline.guard.last_error
    return stats


def step_failing(market: Market) -> str | None:
    """The last error of the market's step if its latest attempt failed."""
    status = StepStatus.objects.filter(market=market, consecutive_failures__gt=0).first()
    return status and status.last_error


def step_failure(market: Market, stats: IngestStats) -> str | None:
    """One line for a command whose trades are stored but whose step failed last (None if it did not):
    features or predictions are missing, so the command has not succeeded."""
    error = stats.step_error or step_failing(market)
    if not error:
        return None
    first = error.strip().splitlines()[0]
    return f"{market.name}: pipeline step failed: {first}; the next stream or replay catches up"


def stream_runner(market: Market, keep_going: Callable[[], bool] | None = None) -> tuple[StreamRunner, StepThread]:
    """A live stream of market with its step thread (started); the caller stops the thread."""
    runner = StreamRunner(market, keep_going=keep_going)
    thread = StepThread(market, skip_stale=True)
    runner.on_commit = thread.wake
    return runner, thread.start()
