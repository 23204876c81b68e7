"""Replay a trades file through the live write path (store, candles, candles_closed)."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty, Queue

from markets.candles import Tick
from markets.ingest import Ingestor, IngestStats
from markets.models import Market
from markets.tradefile import read_trades

PACE_STEP_S = 0.25  # paced replay: longest wall-clock sleep between deliveries
BATCH = 50_000  # trades per transaction (and per candles_closed) at max speed


def replay(
    path: Path, market: Market, speed: float | None = None, progress: Callable[[int], None] | None = None
) -> IngestStats:
    """Ingest every trade of path; speed None = as fast as possible, else FACTOR x real time.

    Windows close by event time, so the candles equal those of a live run
    over the same trades; the last window is flushed at the end.
    """
    ingestor = Ingestor(market)
    Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.REPLAY)
    try:
        clock = None
        with young_collections():
            for batch in prefetched(read_trades(path, batch_size=BATCH, progress=progress)):
                if speed is None:
                    ingestor.ingest(batch, close_until=batch[-1].ts.timestamp())
                else:
                    clock = _paced(ingestor, batch, speed, clock)
                gc.collect(1)
        ingestor.flush()
    finally:
        Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.STOPPED)
    return ingestor.stats


@contextlib.contextmanager
def young_collections() -> Iterator[None]:
    """Turn off automatic garbage collection; the caller collects the young generations itself.

    Every trade of a batch lives through many young collections and ends up in the
    oldest generation, so automatic collection would walk the whole heap again and
    again (a sixth of a max-speed replay). The caller runs gc.collect(1) after each
    batch instead, which frees that batch's reference cycles just as well.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def prefetched(batches: Iterator[list[Tick]]) -> Iterator[list[Tick]]:
    """Parse the next batch in a thread while the database stores this one (psycopg releases the GIL)."""
    queue: Queue = Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                queue.put(batch)
            queue.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(exc)

    thread = threading.Thread(target=produce, name="replay-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get_nowait()
            thread.join(0.05)


def _paced(ingestor: Ingestor, batch: list[Tick], speed: float, clock: tuple[float, float] | None):
    """Deliver batch at speed x the pace of its timestamps; clock = (first event time, wall start)."""
    if clock is None:
        clock = (batch[0].ts.timestamp(), time.monotonic())
    event0, wall0 = clock
    pending: list[Tick] = []
    for tick in batch:
        due = wall0 + (tick.ts.timestamp() - event0) / speed
        while (wait := due - time.monotonic()) > 0:
            if pending:
                ingestor.ingest(pending, close_until=pending[-1].ts.timestamp())
                pending = []
            time.sleep(min(wait, PACE_STEP_S))
            # Quiet stretches still close their windows, as on a live stream.
            ingestor.close(event0 + (time.monotonic() - wall0) * speed)
        pending.append(tick)
    if pending:
        ingestor.ingest(pending, close_until=pending[-1].ts.timestamp())
    return clock
