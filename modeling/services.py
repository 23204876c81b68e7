"""Training a market now: data from the feature store, the gate, the registry."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count

from features import definitions, store
from markets.models import Candle, Market
from modeling import registry, serialization
from modeling.forecast import Forecaster
from modeling.models import ModelArtifact
from modeling.training import Dataset, TrainingError, build_dataset, train

log = logging.getLogger(__name__)


def default_interval(market: Market) -> int:
    """The market's candle interval, or the only interval it has candles at (imported files)."""
    intervals = list(
        Candle.objects.filter(market=market, final=True).values("interval_s").annotate(n=Count("id")).order_by("-n")
    )
    known = [row["interval_s"] for row in intervals]
    if market.interval_s in known or not known:
        return market.interval_s
    return known[0]


def last_window(market: Market, interval_s: int) -> datetime:
    last = (
        Candle.objects.filter(market=market, interval_s=interval_s, final=True)
        .order_by("-start")
        .values_list("start", flat=True)
        .first()
    )
    if last is None:
        raise TrainingError(f"{market}: no {interval_s}s candles stored yet; ingest or import some first")
    return last


def load_dataset(market: Market, interval_s: int, horizon: int, first: datetime, last: datetime) -> Dataset:
    """Feature rows first..last of the offline store (computed and stored where missing)."""
    return build_dataset(store.materialize(market, interval_s, first, last), horizon)


def check_enough(ds: Dataset, market: Market, window_s: int) -> None:
    need = settings.TRAIN_MIN_ROWS
    if len(ds) < need:
        raise TrainingError(
            f"{market}: too little data to train: {len(ds)} {ds.interval_s}s windows with features and a "
            f"target in the last {timedelta(seconds=window_s)}, need at least {need} "
            f"(= {timedelta(seconds=need * ds.interval_s)} of candles plus {definitions.LOOKBACK - 1} windows "
            f"of history and {ds.horizon} ahead)"
        )


def active_forecaster(artifact: ModelArtifact | None) -> Forecaster | None:
    """The active model to compare against; one that cannot be loaded is not a bar to clear."""
    if artifact is None or artifact.feature_version != definitions.VERSION:
        return None
    try:
        return registry.load_forecaster(artifact)
    except serialization.ArtifactError:
        return None


def train_market(
    market: Market, interval_s: int | None = None, horizon: int | None = None, window_s: int | None = None
) -> ModelArtifact:
    """Train on the last window_s of stored candles, store the artifact, promote or reject it."""
    interval_s = interval_s or default_interval(market)
    horizon = horizon or settings.PREDICTION_HORIZON
    window_s = window_s or settings.TRAIN_WINDOW_S
    last = last_window(market, interval_s)
    first = last - timedelta(seconds=window_s - interval_s)
    ds = load_dataset(market, interval_s, horizon, first, last)
    check_enough(ds, market, window_s)
    current = registry.active_artifact(market, interval_s, horizon)
    outcome = train(
        ds,
        active_forecaster(current),
        settings.PROMOTION_MARGIN,
        settings.PROMOTION_SIGNIFICANCE,
        settings.TRAIN_FOLDS,
        settings.TRAIN_VALIDATION_FRACTION,
    )
    data, digest = serialization.dump(outcome.forecaster.payload())
    train_start, train_end = ds.span()
    artifact = ModelArtifact.objects.create(
        market=market,
        interval_s=interval_s,
        horizon=horizon,
        feature_version=definitions.VERSION,
        algorithm=outcome.forecaster.algorithm,
        params=outcome.params,
        train_start=train_start,
        train_end=train_end,
        metrics=outcome.metrics,
        artifact=data,
        sha256=digest,
        version=registry.next_version(market, interval_s, horizon),
    )
    if outcome.promote:
        registry.promote(artifact, outcome.reason, action="gate")
        artifact.refresh_from_db()
    else:
        registry.set_status(artifact, ModelArtifact.Status.REJECTED, "gate", outcome.reason)
        if current is not None and outcome.retire_active:
            registry.retire(current, outcome.retire_active)
    log.info("%s: %s", artifact, outcome.reason)
    return artifact
