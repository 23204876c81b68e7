"""Prediction at each candle close, scoring once the target window has closed, publishing.

The same functions run for live streams, backfill and replay, called by the
pipeline step (pipeline/step.py) in its order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis import RedisError
from threadpoolctl import ThreadpoolController

from core import metrics
from core.bulk import upsert
from core.redis_client import get_redis
from features import definitions
from features.models import FeatureRow
from inference import broadcast
from inference.api.serializers import CandleSerializer, PredictionSerializer
from inference.models import Prediction
from inference.serving import get_served_model, record_failure, served_persistence
from markets.models import Candle, Market
from modeling.forecast import PERSISTENCE, Forecaster

log = logging.getLogger(__name__)


def latest_key(market_id: int) -> str:
    return f"inference:latest:{market_id}"


def encode(payload: dict) -> str:
    """Compact JSON, as the API renders it: the cached latest prediction is served as is."""
    return json.dumps(payload, separators=(",", ":"))


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def predict_rows(market: Market, rows: list[FeatureRow]) -> list[Prediction]:
    """Predict from each new feature row, store, cache the newest and publish it."""
    horizon = settings.PREDICTION_HORIZON
    served_by_interval: dict = {}
    bands: dict = {}

    def band(interval_s: int) -> Forecaster | None:  # looked up only when persistence is served
        if interval_s not in bands:
            bands[interval_s] = served_persistence(market, interval_s, horizon)
        return bands[interval_s]

    predictions = []
    # One row at a time gains nothing from OpenMP threads, which only stall on a busy host.
    with _threadpools().limit(limits=1, user_api="openmp"):
        for row in rows:
            if row.interval_s not in served_by_interval:
                # Looked up at every batch: a promotion or rollback applies at the next candle.
                served_by_interval[row.interval_s] = get_served_model(market, row.interval_s, horizon)
            predictions.append(_predict(market, row, horizon, served_by_interval[row.interval_s], band))
    # A prediction once published is never rewritten: a replay over known windows keeps the first.
    upsert(Prediction, predictions, ["market", "interval_s", "horizon", "made_at"])
    if predictions:
        recent = [PredictionSerializer(p).data for p in predictions[-settings.WS_PUBLISH_MAX_BATCH :]]
        broadcast.publish("predictions", market, [{"type": "prediction", **data} for data in recent])
        try:
            get_redis().set(latest_key(market.pk), encode(recent[-1]))
        except RedisError:
            log.exception("caching the latest prediction of %s failed", market)
        score_due(market, [(p.interval_s, p.target_time) for p in predictions])
    return predictions


def _predict(
    market: Market, row: FeatureRow, horizon: int, served, band: Callable[[int], Forecaster | None]
) -> Prediction:
    """The served model's prediction, else persistence: the close, in the band calibrated by the last training."""
    started = time.perf_counter()
    made_at = row.start + timedelta(seconds=row.interval_s)
    close = Decimal(row.close)
    price = lower = upper = close
    model_id = version = None
    algorithm = PERSISTENCE
    if served is not None and served.feature_version == row.version:
        try:
            price, lower, upper = served.predict(row)
            model_id, version, algorithm = served.artifact_id, served.version, served.algorithm
        except Exception as exc:
            # A broken model must not stop the pipeline: serve persistence, labelled as such.
            log.exception("model %s failed on %s at %s; serving persistence", served.artifact_id, market, made_at)
            record_failure(served.artifact_id, f"prediction at {made_at:%Y-%m-%dT%H:%M:%SZ} raised {exc!r}")
    elif served is not None:
        log.warning("model %s wants features %s, got %s", served.artifact_id, served.feature_version, row.version)
    persistence = band(row.interval_s) if model_id is None and row.version == definitions.VERSION else None
    if persistence is not None:
        _, lower, upper = persistence.predict_row(close, row.values)
    return Prediction(
        market=market,
        interval_s=row.interval_s,
        horizon=horizon,
        made_at=made_at,
        target_time=made_at + timedelta(seconds=row.interval_s * horizon),
        base_close=close,
        price=price,
        lower=lower,
        upper=upper,
        model_id=model_id,
        model_version=version,
        algorithm=algorithm,
        latency_ms=(time.perf_counter() - started) * 1000,
    )


def score(market: Market, interval_s: int, first_target: datetime, last_target: datetime, again: bool = False) -> int:
    """Store the realized close in the market's unscored predictions due in [first_target, last_target].

    again=True scores the already scored ones instead, where late trades have
    since changed the close of their target candle.

    A prediction is due when the final candle ending at its target time exists. Run
    when candles close and right after predicting (a backfill or replay may already
    hold the target candle).
    Matched here rather than by an SQL join on the candle start: a replay writes
    thousands of rows before the tables' statistics know them, and the planner
    then turned that join into a loop over the whole market for every prediction.
    """
    period = timedelta(seconds=interval_s)
    closes = dict(
        Candle.objects.filter(
            market=market, interval_s=interval_s, final=True, start__range=(first_target - period, last_target - period)
        ).values_list("start", "close")
    )
    predictions = Prediction.objects.filter(
        market=market, interval_s=interval_s, target_time__range=(first_target, last_target)
    )
    predictions = predictions.exclude(realized=None) if again else predictions.filter(realized=None)
    due = [
        (pk, closes[target - period])
        for pk, target, realized in predictions.values_list("pk", "target_time", "realized")
        if target - period in closes and closes[target - period] != realized
    ]
    if not due:
        return 0
    ids, realized = zip(*due, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {Prediction._meta.db_table} AS p SET realized = u.close, scored_at = %s
                FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, close) WHERE p.id = u.id""",
            [timezone.now(), list(ids), list(realized)],
        )
        metrics.count(metrics.RESCORED if again else metrics.SCORED, market.name, cursor.rowcount)
        return cursor.rowcount


def score_due(market: Market, targets: list[tuple[int, datetime]], again: bool = False) -> int:
    """score() each interval's span of (interval_s, target time) pairs."""
    spans: dict[int, tuple[datetime, datetime]] = {}
    for interval_s, target in targets:
        first, last = spans.get(interval_s, (target, target))
        spans[interval_s] = (min(first, target), max(last, target))
    return sum(score(market, interval_s, first, last, again) for interval_s, (first, last) in spans.items())


def score_candles(market: Market, candles: list[Candle], again: bool = False) -> int:
    """Score the predictions whose target is one of candles (again: rescore them, the candles were amended)."""
    return score_due(market, [(c.interval_s, c.start + timedelta(seconds=c.interval_s)) for c in candles], again)


def publish_candles(market: Market, candles: list[Candle]) -> None:
    recent = candles[-settings.WS_PUBLISH_MAX_BATCH :]
    broadcast.publish("candles", market, [{"type": "candle", **CandleSerializer(c).data} for c in recent])
