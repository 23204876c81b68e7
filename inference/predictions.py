"""Prediction at each candle close, scoring once the target window has closed, publishing.

The same functions run for live streams, backfill and replay, called by the
pipeline step (pipeline/step.py) in its order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from threadpoolctl import ThreadpoolController

from core import prometheus
from core.bulk import set_realized, upsert
from features.engine import version_target
from features.models import FeatureRow
from inference import broadcast
from inference.models import Prediction
from inference.payloads import candle_payload, prediction_payload
from inference.serving import Lookups, ServedDirection, get_served_model, lookups, record_failure
from markets.models import BookWindow, Candle, Market
from modeling.forecast import PERSISTENCE, Forecaster

log = logging.getLogger(__name__)
PREDICTION_KEY = ["market", "interval_s", "horizon", "made_at"]


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def predict(market: Market, pending: dict[int, list[FeatureRow]]) -> dict[int, list[Prediction]]:
    """Predict from new feature rows at each horizon (horizon -> its rows), store them all at once, publish each
    horizon's; the predictions made, by horizon. Their scoring is the caller's (once for every horizon).

    A row without the target's price (a mid target, no book window there) gets no prediction.
    """
    found: dict[int, Lookups] = {}  # interval -> what is served there
    # One row at a time gains nothing from OpenMP threads, which only stall on a busy host.
    with _threadpools().limit(limits=1, user_api="openmp"):
        made = {horizon: _predict_rows(market, rows, horizon, found) for horizon, rows in pending.items()}
    # A prediction once published is never rewritten: a replay over known windows keeps the first.
    upsert(Prediction, [p for batch in made.values() for p in batch], PREDICTION_KEY)
    for horizon, predictions in made.items():
        if predictions:
            recent = predictions[-settings.WS_PUBLISH_MAX_BATCH :]
            payloads = [{"type": "prediction", **prediction_payload(p)} for p in recent]
            broadcast.publish("predictions", market, payloads, horizon)
    return made


def _predict_rows(market: Market, rows: list[FeatureRow], horizon: int, found: dict[int, Lookups]) -> list[Prediction]:
    """The predictions (unsaved) of the rows at one horizon (found: the lookups of each interval, filled as met)."""
    served_by_interval: dict = {}

    def band(key: tuple[int, str, str]) -> Forecaster | None:  # looked up only when persistence is served
        return found[key[0]].band(horizon, *key[1:])

    def direction(key: tuple[int, str, str]) -> ServedDirection | None:  # (interval, feature version, target)
        return found[key[0]].direction(horizon, *key[1:])

    predictions = []
    for row in rows:
        if row.interval_s not in served_by_interval:
            if row.interval_s not in found:  # looked up at every step: a promotion applies at the next candle
                found[row.interval_s] = lookups(market, row.interval_s)
            served_by_interval[row.interval_s] = get_served_model(
                market, row.interval_s, horizon, found[row.interval_s]
            )
        prediction = _predict(market, row, horizon, served_by_interval[row.interval_s], band, direction)
        if prediction is not None:
            predictions.append(prediction)
    return predictions


def _predict(
    market: Market,
    row: FeatureRow,
    horizon: int,
    served,
    band: Callable[[tuple[int, str, str]], Forecaster | None],
    direction: Callable[[tuple[int, str, str]], ServedDirection | None],
) -> Prediction | None:
    """The served model's prediction, else persistence: the target's price now, in the band calibrated by the
    last training; with the direction forecast of the training runs of the same feature set and target.

    The target is the served model's, else the one of the row's feature set (mid with a book, else close).
    """
    started = time.perf_counter()
    made_at = row.start + timedelta(seconds=row.interval_s)
    usable = served is not None and served.feature_version == row.version
    target = served.target if usable else version_target(row.version)
    base = row.mid if target == "mid" else row.close
    if base is None:
        return None
    close = Decimal(base)
    price = lower = upper = close
    model_id = version = None
    algorithm = PERSISTENCE
    if usable:
        try:
            price, lower, upper = served.predict(row, close)
            model_id, version, algorithm = served.artifact_id, served.version, served.algorithm
        except Exception as exc:
            # A broken model must not stop the pipeline: serve persistence, labelled as such.
            log.exception("model %s failed on %s at %s; serving persistence", served.artifact_id, market, made_at)
            record_failure(served.artifact_id, f"prediction at {made_at:%Y-%m-%dT%H:%M:%SZ} raised {exc!r}")
    elif served is not None:
        log.warning("model %s wants features %s, got %s", served.artifact_id, served.feature_version, row.version)
    key = (row.interval_s, row.version, target)
    persistence = band(key) if model_id is None else None
    if persistence is not None:
        _, lower, upper = persistence.predict_row(close, row.values)
    p_up = p_move = p_up_base = None
    source = served_direction_model = ""
    if (forecast := direction(key)) is not None:
        try:
            p_up, p_move = forecast.predict(row.values)
            p_up_base, source, served_direction_model = forecast.up_base, forecast.source, forecast.model_name
        except Exception:  # like a broken price model: never stops the pipeline; the base rate is served
            log.exception("direction forecast failed on %s at %s; serving the base rate", market, made_at)
            p_up, p_move, p_up_base = forecast.up_base, forecast.move_base, forecast.up_base
            source = served_direction_model = "base rate"
    return Prediction(
        market=market,
        interval_s=row.interval_s,
        horizon=horizon,
        made_at=made_at,
        target_time=made_at + timedelta(seconds=row.interval_s * horizon),
        target=target,
        base_close=close,
        price=price,
        lower=lower,
        upper=upper,
        model_id=model_id,
        model_version=version,
        algorithm=algorithm,
        p_up=p_up,
        p_move=p_move,
        p_up_base=p_up_base,
        direction_source=source,
        direction_model=served_direction_model,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def score(
    market: Market,
    interval_s: int,
    first_target: datetime,
    last_target: datetime,
    again: bool = False,
    targets: tuple[str, ...] = ("close", "mid"),
) -> int:
    """Store the realized price in the market's unscored predictions due in [first_target, last_target].

    again=True scores the already scored ones instead, where late trades have
    since changed the close of their target candle.

    A prediction of the close is due when the final candle ending at its target
    time exists, one of the mid when the book window ending then does. Run
    when windows close and right after predicting (a backfill or replay may already
    hold the target window).
    Matched in Python, not by an SQL join: fresh rows have no table statistics, which misleads the planner.
    Prices are read only for the kinds of target and the span the predictions found need.
    """
    period = timedelta(seconds=interval_s)
    predictions = Prediction.objects.filter(
        market=market, interval_s=interval_s, target_time__range=(first_target, last_target), target__in=targets
    )
    predictions = predictions.exclude(realized=None) if again else predictions.filter(realized=None)
    found = list(predictions.values_list("pk", "target_time", "target", "realized"))
    if not found:
        return 0
    prices: dict[str, dict] = {}
    for kind in {kind for _, _, kind, _ in found}:
        starts = [target - period for _, target, k, _ in found if k == kind]
        rows = Candle.objects.filter(final=True) if kind == "close" else BookWindow.objects.all()
        span = rows.filter(market=market, interval_s=interval_s, start__range=(min(starts), max(starts)))
        prices[kind] = dict(span.values_list("start", kind))
    due = [
        (pk, prices[kind][target - period])
        for pk, target, kind, realized in found
        if target - period in prices[kind] and prices[kind][target - period] != realized
    ]
    if not due:
        return 0
    ids, realized = zip(*due, strict=True)
    scored = set_realized(Prediction, ids, realized)
    prometheus.count(prometheus.RESCORED if again else prometheus.SCORED, market.name, scored)
    return scored


def score_due(
    market: Market,
    targets: list[tuple[int, datetime]],
    again: bool = False,
    kinds: tuple[str, ...] = ("close", "mid"),
) -> int:
    """score() each interval's span of (interval_s, target time) pairs, for predictions of the kinds of target."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    for interval_s, target in targets:
        first, last = spans.get(interval_s, (target, target))
        spans[interval_s] = (min(first, target), max(last, target))
    return sum(score(market, iv, first, last, again, kinds) for iv, (first, last) in spans.items())


def score_candles(market: Market, candles: list[Candle], again: bool = False) -> int:
    """Score the predictions whose target is one of candles (again: rescore those of the close, the candles
    were amended; a mid does not change with late trades)."""
    kinds = ("close",) if again else ("close", "mid")
    return score_due(market, [(c.interval_s, c.start + timedelta(seconds=c.interval_s)) for c in candles], again, kinds)


def score_windows(market: Market, interval_s: int, windows: list[datetime], made: Sequence[Prediction] = ()) -> int:
    """Score the predictions whose target window is one of windows (its candle or its book window), and those
    just made (a backfill or replay may already hold their target window): one scoring for both."""
    period = timedelta(seconds=interval_s)
    return score_due(
        market, [(interval_s, w + period) for w in windows] + [(p.interval_s, p.target_time) for p in made]
    )


def publish_candles(market: Market, candles: list[Candle]) -> None:
    recent = candles[-settings.WS_PUBLISH_MAX_BATCH :]
    broadcast.publish("candles", market, [{"type": "candle", **candle_payload(c)} for c in recent])
