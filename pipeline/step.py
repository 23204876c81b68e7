"""The pipeline step: everything final and not yet done for one market, in order.

1. candles amended by late trades: the feature rows that read them are
   computed again, their predictions rescored, the candles pushed again;
2. features for every final window without a feature row, and those candles
   published (before any prediction made from them);
3. predictions for every feature row without one, at every horizon of
   PREDICTION_HORIZONS, each by its own served model (live: a window whose
   target time at that horizon has already passed is skipped and counted), published;
4. scoring of the predictions whose target candle has just closed.

The work is found in the database (watermarks read on first use, the
candles' amend_pending flag), so a step that fails is simply run again:
nothing is lost and nothing is done twice.

The feature set follows the market (features.engine.feature_version, looked
up at every run): v1 from the candles alone, or v2 once the market has
order-book windows. A v2 window is final once both its candle and its book
window are (windows up to the earlier of the last final candle and the last
stored book window): a window without a trade still has its book row, and
the candle stream carries its close; a window in that range without a book
window gets no mid (and no prediction of the mid).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import groupby

from django.db import transaction
from django.db.models import Max

from core import horizons, prometheus
from features import definitions, engine, store
from features.models import FeatureRow
from inference import predictions, readcache
from inference.models import Prediction
from markets.models import BookWindow, Candle, Market
from markets.trades.candles import consecutive_runs
from monitoring import challengers
from pipeline.models import StepStatus

MAX_WINDOWS = 5_000  # windows per pass: memory stays bounded after a long outage


class StepError(Exception):
    """One phase of the step failed; the message names the market, the phase and its windows."""


@dataclass
class StepStats:
    features: int = 0
    predictions: int = 0
    skipped: int = 0
    scored: int = 0
    refreshed: int = 0

    def add(self, other: StepStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def windows_by_interval(candles: list[Candle]) -> Iterator[tuple[int, list[datetime]]]:
    """(interval_s, the candles' window starts in order) for each interval among candles."""
    ordered = sorted(candles, key=lambda c: (c.interval_s, c.start))
    for interval_s, group in groupby(ordered, key=lambda c: c.interval_s):
        yield interval_s, [c.start for c in group]


class MarketStep:
    """The step of one market at its own interval; keeps its watermarks between runs.

    skip_stale: live mode, where a prediction whose target time (by clock) has
    passed is worth nothing and is skipped; a replay or backfill predicts every window.
    """

    def __init__(self, market: Market, skip_stale: bool = False, clock: Callable[[], float] = time.time):
        self.market = market
        self.interval = timedelta(seconds=market.interval_s)
        self.horizons = horizons.configured()
        self.skip_stale = skip_stale
        self.clock = clock
        self.loaded = False
        self.version = definitions.VERSION
        self.features_until: datetime | None = None  # last window with features
        self.predicted_until: datetime | None = None  # last window predicted (or skipped)

    def run(self) -> StepStats:
        version = engine.feature_version(self.market, self.market.interval_s)
        if not self.loaded or version != self.version:
            self.version = version  # a market's first book windows switch it to v2: new rows, own watermark
            self._load_watermarks()
        stats = StepStats()
        self._refresh_amended(stats)
        while self._advance(stats):
            pass
        if any(vars(stats).values()):
            readcache.market_changed(self.market)  # REST answers of the market show what this step wrote
        return stats

    def _load_watermarks(self) -> None:
        market, interval_s = self.market, self.market.interval_s
        self.features_until = FeatureRow.objects.filter(
            market=market, interval_s=interval_s, version=self.version
        ).aggregate(last=Max("start"))["last"]
        made = last_prediction_at(market, interval_s, self.horizons)
        recorded = StepStatus.objects.filter(market=market).values_list("predicted_until", flat=True).first()
        marks = [m for m in (made and made - self.interval, recorded) if m is not None]
        # Rows computed before any prediction (imported history, training) are not predicted after the fact.
        self.predicted_until = max(marks) if marks else self.features_until
        self.loaded = True

    def _advance(self, stats: StepStats) -> bool:
        """Features, publication, predictions and scoring of the next final windows; True if more may wait."""
        market = self.market
        candles, windows, more = self._next_windows()
        rows: list[FeatureRow] = []
        if windows:
            first, last = windows[0], windows[-1]
            try:
                batch = engine.compute_features(market, market.interval_s, first, last, self.version)
                rows = store.save_rows(store.to_rows(market, batch, keep=set(windows)))
            except Exception as exc:
                raise StepError(f"{market}: features of {first:%Y-%m-%dT%H:%M:%SZ}..{last:%H:%M:%S}: {exc}") from exc
            self.features_until = last
            stats.features += len(rows)
            if candles:
                predictions.publish_candles(market, candles)
        made = self._predict(rows, stats)
        if windows or made:
            stats.scored += predictions.score_windows(market, market.interval_s, windows, made)
        return more

    def _next_windows(self) -> tuple[list[Candle], list[datetime], bool]:
        """The next run of final windows without features, their candles, and whether more may wait.

        v1: the final candles. v2: the windows with a final candle or a book
        window, up to the earlier of the last final candle and the last book window.
        At most MAX_WINDOWS, and one run of consecutive windows at a time: no
        computation spans a gap between two series.
        """
        market, after = self.market, self.features_until
        candles = Candle.objects.filter(market=market, interval_s=market.interval_s, final=True)
        if after is not None:
            candles = candles.filter(start__gt=after)
        if self.version != definitions.BOOK_VERSION:
            fetched = list(candles.order_by("start")[:MAX_WINDOWS])
            run = next(consecutive_runs(fetched, market.interval_s), [])
            return run, [c.start for c in run], len(run) < len(fetched) or len(fetched) == MAX_WINDOWS
        books = BookWindow.objects.filter(market=market, interval_s=market.interval_s)
        if after is not None:
            books = books.filter(start__gt=after)
        marks = [qs.order_by("-start").values_list("start", flat=True).first() for qs in (candles, books)]
        if None in marks:
            return [], [], False
        ready = min(marks)
        found = list(candles.filter(start__lte=ready).order_by("start")[:MAX_WINDOWS])
        book_starts = books.filter(start__lte=ready).order_by("start").values_list("start", flat=True)[:MAX_WINDOWS]
        fetched = sorted({c.start for c in found} | set(book_starts))[:MAX_WINDOWS]
        run = next(consecutive_runs(fetched, market.interval_s, start=lambda window: window), [])
        more = len(run) < len(fetched) or len(fetched) == MAX_WINDOWS
        return [c for c in found if c.start <= run[-1]], run, more

    def _predict(self, rows: list[FeatureRow], stats: StepStats) -> list[Prediction]:
        """Predict every feature row after the prediction watermark (rows: the ones just computed) at every
        horizon; the predictions made."""
        done = self.predicted_until
        if rows and (done is None or rows[0].start - self.interval <= done):
            pending = [r for r in rows if done is None or r.start > done]
        elif done is not None and self.features_until is not None and done >= self.features_until:
            return []
        else:  # an earlier run computed features but failed to predict: catch up from the store
            stored = FeatureRow.objects.filter(
                market=self.market, interval_s=self.market.interval_s, version=self.version
            )
            if done is not None:
                stored = stored.filter(start__gt=done)
            pending = list(stored.select_related("market").order_by("start")[:MAX_WINDOWS])
        if not pending:
            return []
        fresh = {horizon: self._fresh(pending, horizon) for horizon in self.horizons}
        try:
            made = predictions.predict(self.market, fresh)
        except Exception as exc:  # a rerun after a failure keeps what was already stored
            first, last = pending[0].start, pending[-1].start
            raise StepError(
                f"{self.market}: predictions of {first:%Y-%m-%dT%H:%M:%SZ}..{last:%H:%M:%S}: {exc}"
            ) from exc
        challengers.shadow(self.market, fresh)  # never raises; never served
        every = [p for batch in made.values() for p in batch]
        prometheus.predicted(self.market.name, every, self.clock() if self.skip_stale else None)
        stats.predictions += len(every)
        stats.skipped += sum(len(pending) - len(kept) for kept in fresh.values())
        self.predicted_until = pending[-1].start
        return every

    def _fresh(self, pending: list[FeatureRow], horizon: int) -> list[FeatureRow]:
        """The rows worth predicting at the horizon: live, those whose target time has not passed yet."""
        if not self.skip_stale:
            return pending
        now, ahead = self.clock(), self.interval * (1 + horizon)
        return [r for r in pending if (r.start + ahead).timestamp() > now]

    def _refresh_amended(self, stats: StepStats) -> None:
        """Late trades changed final candles: recompute what read them, rescore, push them again."""
        market = self.market
        if not Candle.objects.filter(market=market, amend_pending=True).exists():
            return  # the common case, one indexed look instead of a transaction
        with transaction.atomic():
            claimed = list(
                Candle.objects.select_for_update(skip_locked=True)
                .filter(market=market, amend_pending=True)
                .order_by("interval_s", "start")[:MAX_WINDOWS]
            )
            _set_pending(market, claimed, False)
        if not claimed:
            return
        try:
            targets = (market, *engine.dependents(market))
            for interval_s, windows in windows_by_interval(claimed):
                for target in targets:
                    store.refresh(target, interval_s, windows[0], windows[-1])
            stats.scored += predictions.score_candles(market, claimed, again=True)
            predictions.publish_candles(market, claimed)
        except Exception as exc:
            _set_pending(market, claimed, True)
            raise StepError(f"{market}: refresh of {len(claimed)} amended candle(s): {exc}") from exc
        stats.refreshed += len(claimed)


def last_prediction_at(market: Market, interval_s: int, horizons: tuple[int, ...]) -> datetime | None:
    """When the newest prediction at any of the horizons was made."""
    return Prediction.objects.filter(market=market, interval_s=interval_s, horizon__in=horizons).aggregate(
        last=Max("made_at")
    )["last"]


def _set_pending(market: Market, candles: list[Candle], pending: bool) -> None:
    for interval_s, windows in windows_by_interval(candles):
        Candle.objects.filter(market=market, interval_s=interval_s, start__in=windows).update(amend_pending=pending)
