"""Historical trades from an exchange's history API, resumable per market."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings

from markets.models import Market
from markets.streams.sources import source_for
from markets.streams.sources.base import to_ns
from markets.trades.ingest import Ingestor, IngestStats


class BackfillError(Exception):
    pass


def resume_range(market: Market, since_ns: int) -> tuple[int, int]:
    """(origin, start) in ns. backfill_cursor "origin:last" records that [origin, last] is stored:
    a backfill from inside that range resumes at last."""
    origin, _, last = market.backfill_cursor.partition(":")
    if origin.isdigit() and last.isdigit() and int(origin) <= since_ns <= int(last):
        return int(origin), int(last)
    return since_ns, since_ns


def backfill(
    market: Market,
    since: datetime,
    progress: Callable[[float, IngestStats], None] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> IngestStats:
    """Store every trade from since to now; windows that ended before now are finalized.

    on_commit is called after each batch that finalized candles (see Ingestor).
    """
    origin, start = resume_range(market, to_ns(since))
    try:
        pages = source_for(market).history(start)
    except ValueError as exc:  # an exchange without a source
        raise BackfillError(str(exc)) from None
    if pages is None:
        raise BackfillError(f"{market.exchange} offers no trade history API; {market} cannot be backfilled")
    ingestor = Ingestor(market, on_commit=on_commit)
    for ticks, cursor in pages:
        ingestor.ingest(ticks, close_until=ticks[-1].ts.timestamp())
        market.backfill_cursor = f"{origin}:{cursor}"
        Market.objects.filter(pk=market.pk).update(backfill_cursor=market.backfill_cursor)
        if progress:
            progress(ticks[-1].ts.timestamp(), ingestor.stats)
    # History is complete up to now: windows that ended before now minus the grace period are final.
    ingestor.finalize_due(time.time() - settings.CANDLE_GRACE_S)
    return ingestor.stats
