"""Replay a trades file through the live write path (store, candles, candles_closed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from markets.candles import Tick
from markets.ingest import Ingestor, IngestStats
from markets.models import Market
from markets.tradefile import read_trades

PACE_STEP_S = 0.25  # paced replay: longest wall-clock sleep between deliveries


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
        for batch in read_trades(path, progress=progress):
            if speed is None:
                ingestor.ingest(batch, close_until=batch[-1].ts.timestamp())
            else:
                clock = _paced(ingestor, batch, speed, clock)
        ingestor.flush()
    finally:
        Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.STOPPED)
    return ingestor.stats


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
