"""Live pipeline step: candles closed -> feature rows stored -> features_ready; amended candles -> rows refreshed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import groupby

from django.db import transaction
from django.dispatch import receiver

from features import store
from features.signals import features_ready
from markets.models import Market
from markets.signals import candles_amended, candles_closed


def windows_by_interval(candles: list) -> Iterator[tuple[int, list[datetime]]]:
    """(interval_s, the candles' window starts in order) for each interval among candles."""
    ordered = sorted(candles, key=lambda c: (c.interval_s, c.start))
    for interval_s, group in groupby(ordered, key=lambda c: c.interval_s):
        yield interval_s, [c.start for c in group]


@receiver(candles_closed, dispatch_uid="features.on_candles_closed")
def on_candles_closed(sender, market: Market, candles: list, **kwargs) -> None:
    for interval_s, windows in windows_by_interval(candles):
        batch = store.compute_features(market, interval_s, windows[0], windows[-1])
        rows = store.save_rows(store.to_rows(market, batch, keep=set(windows)))
        if rows:
            store.publish_latest(rows[-1])
            transaction.on_commit(lambda rows=rows: features_ready.send(sender=Market, market=market, rows=rows))


@receiver(candles_amended, dispatch_uid="features.on_candles_amended")
def on_candles_amended(sender, market: Market, candles: list, **kwargs) -> None:
    """Late trades changed finalized candles: stored rows that read them are computed again (no new predictions)."""
    targets = (market, *store.dependents(market))
    for interval_s, windows in windows_by_interval(candles):
        for target in targets:
            store.refresh(target, interval_s, windows[0], windows[-1])
