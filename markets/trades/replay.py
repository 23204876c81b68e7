"""Replay a trades file through the live write path (trades stored, candles finalized)."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

from django.db.models import Max

from core.lease import held
from core.redis_client import best_effort
from markets.models import Market, Trade
from markets.names import stream_key
from markets.trades.candles import Tick
from markets.trades.file import TradeFileError, line_of, read_trade_rows, read_trades
from markets.trades.ingest import Ingestor, IngestStats, TradeRefused

log = logging.getLogger(__name__)
PACE_STEP_S = 0.25  # paced replay: longest wall-clock sleep between deliveries
BATCH = 150_000  # trades per transaction (and per on_commit call) at max speed
CHUNK = 2_000  # trades per COPY message at max speed: PostgreSQL stores one while Python parses the next


def replay_trades(
    path: Path,
    market: Market,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> IngestStats:
    """Ingest every trade of path; speed None = as fast as possible, else FACTOR x real time.

    Windows close by event time, so the candles equal those of a live run
    over the same trades; the last window is flushed at the end. on_commit
    is called after each batch that finalized candles (see Ingestor). A trade
    the aggregator refuses (see Aggregator) stops the replay like a malformed
    row: TradeFileError naming its line, its batch rolled back.
    """
    ingestor = Ingestor(market, on_commit=on_commit, strict=True)
    # A market that is streaming keeps its stream's state; a replay into it only adds trades. (Redis down: the
    # stream cannot say, and the replay shows its own state.)
    shown = not best_effort(f"checking the stream of {market}", lambda: held(stream_key(market.name)))
    if shown:
        Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.REPLAY)
    try:
        with young_collections():
            if speed is None:
                chunks = read_trade_rows(path, batch_size=CHUNK, progress=progress)
                while ingestor.ingest_rows(islice(chunks, BATCH // CHUNK)):
                    gc.collect(1)
            else:
                clock = None
                for batch in resumed(read_trades(path, batch_size=BATCH, progress=progress), market):
                    clock = _paced(ingestor, batch, speed, clock)
                    gc.collect(1)
        ingestor.flush()
    except TradeRefused as exc:
        line = line_of(path, exc.matches)
        raise TradeFileError(f"{path}:{line}: {exc}" if line else f"{path}: {exc}") from None
    finally:
        if shown:
            Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.STOPPED)
    return ingestor.stats


def resumed(batches: Iterator[list[Tick]], market: Market) -> Iterator[list[Tick]]:
    """The batches from the market's last stored trade on: a paced replay that is restarted (killed, say)
    goes on where it stopped instead of pacing through what it had already stored."""
    last = Trade.objects.filter(market=market).aggregate(last=Max("ts"))["last"]
    skipped = 0
    for batch in batches:
        if last is not None:
            # The last stored second is read again: its stored trades are skipped as duplicates.
            kept = [tick for tick in batch if tick.ts >= last] if batch[0].ts < last else batch
            skipped += len(batch) - len(kept)
            if not kept:
                continue
            if skipped:
                log.info(
                    "%s: resuming at the last stored trade (%s): %d trades before it skipped", market, last, skipped
                )
            batch, last = kept, None
        yield batch


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
            ingestor.finalize_due(event0 + (time.monotonic() - wall0) * speed)
        pending.append(tick)
    if pending:
        ingestor.ingest(pending, close_until=pending[-1].ts.timestamp())
    return clock
