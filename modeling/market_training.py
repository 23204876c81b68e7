"""Training a market now: data from the feature store, the gate, the registry."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from core import horizons
from features import definitions, store
from features.engine import feature_version, version_target
from markets.models import Candle, Market
from modeling import registry, serialization
from modeling.forecast import Forecaster
from modeling.models import ModelArtifact
from modeling.training import Dataset, TrainingError, build_dataset, judge, train

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


def resolve_target(market: Market, interval_s: int, target: str | None) -> tuple[str, str]:
    """(feature version, target) to train or backtest with: the market's, or the target asked for if it can be."""
    version = feature_version(market, interval_s)
    target = target or version_target(version)
    if target == "mid" and version != definitions.BOOK_VERSION:
        raise TrainingError(
            f"{market}: target mid needs the market's order book, and it has no {interval_s}s book windows"
            " (replay a book file or stream its book first)"
        )
    return version, target


def check_enough(ds: Dataset, market: Market, window_s: int) -> None:
    need = settings.TRAIN_MIN_ROWS
    if len(ds) < need:
        raise TrainingError(
            f"{market}: too little data to train: {len(ds)} {ds.interval_s}s windows with features and a "
            f"target in the last {timedelta(seconds=window_s)}, need at least {need} "
            f"(= {timedelta(seconds=need * ds.interval_s)} of candles plus {definitions.LOOKBACK - 1} windows "
            f"of history and {ds.horizon} ahead)"
        )


def active_forecaster(artifact: ModelArtifact | None, version: str, target: str) -> Forecaster | None:
    """The active model to compare against; one that cannot be loaded is not a bar to clear."""
    if artifact is None or artifact.feature_version != version or artifact.target != target:
        return None
    try:
        return registry.load_forecaster(artifact)
    except serialization.ArtifactError:
        return None


def train_market(
    market: Market,
    interval_s: int | None = None,
    horizon: int | None = None,
    window_s: int | None = None,
    target: str | None = None,
) -> ModelArtifact:
    """Train one horizon (default: the shortest); see train_horizons."""
    return train_horizons(market, interval_s, (horizon or horizons.shortest(),), window_s, target)[0]


def train_horizons(
    market: Market,
    interval_s: int | None = None,
    ahead: tuple[int, ...] = (),
    window_s: int | None = None,
    target: str | None = None,
) -> list[ModelArtifact]:
    """Train each horizon of ahead (default: every one of PREDICTION_HORIZONS) on the last window_s of stored
    candles: an artifact per horizon, each promoted or rejected by its own gate.

    The feature rows are read once for all horizons; each has its own dataset (its target) and model.
    target: "close" or "mid" (default: mid where the market has a book, else close).
    The artifact holds the price model and the run's direction forecast.
    """
    interval_s = interval_s or default_interval(market)
    window_s = window_s or settings.TRAIN_WINDOW_S
    version, target = resolve_target(market, interval_s, target)
    last = last_window(market, interval_s)
    first = last - timedelta(seconds=window_s - interval_s)
    batch = store.materialize(market, interval_s, first, last)
    return [
        train_dataset(market, build_dataset(batch, horizon, target=target), version, window_s)
        for horizon in ahead or horizons.configured()
    ]


def train_dataset(market: Market, ds: Dataset, version: str, window_s: int) -> ModelArtifact:
    """Train on one horizon's dataset, store the artifact, promote or reject it."""
    check_enough(ds, market, window_s)
    interval_s, horizon, target = ds.interval_s, ds.horizon, ds.target
    current = registry.active_artifact(market, interval_s, horizon)
    outcome = train(
        ds,
        active_forecaster(current, version, target),
        settings.PROMOTION_MARGIN,
        settings.PROMOTION_SIGNIFICANCE,
        settings.TRAIN_FOLDS,
        settings.TRAIN_VALIDATION_FRACTION,
    )
    payload = outcome.forecaster.payload() | {"direction": outcome.direction.forecaster.payload()}
    data, digest = serialization.dump(payload)
    train_start, train_end = ds.span()
    with transaction.atomic():
        # The verdict stands against the model active now, not the one active when training began.
        active = registry.active_artifact(market, interval_s, horizon, for_update=True)
        if getattr(active, "pk", None) != getattr(current, "pk", None):
            log.info(
                "%s %ss +%s: the active model changed during training; judging against it", market, interval_s, horizon
            )
            judge(
                outcome,
                active_forecaster(active, version, target),
                settings.PROMOTION_MARGIN,
                settings.PROMOTION_SIGNIFICANCE,
            )
        artifact = registry.create_artifact(
            market,
            interval_s,
            horizon,
            feature_version=version,
            target=target,
            direction_source=outcome.direction.forecaster.source,
            direction_model=outcome.direction.forecaster.model_name,
            algorithm=outcome.forecaster.algorithm,
            params=outcome.params,
            train_start=train_start,
            train_end=train_end,
            metrics=outcome.metrics,
            artifact=data,
            sha256=digest,
        )
        if outcome.promote:
            registry.promote(artifact, outcome.reason, action="gate")
            artifact.refresh_from_db()
        else:
            registry.set_status(artifact, ModelArtifact.Status.REJECTED, "gate", outcome.reason)
            if active is not None and outcome.retire_active:
                registry.retire(active, outcome.retire_active)
    log.info("%s: %s; direction: %s", artifact, outcome.reason, outcome.direction.metrics["up"]["reason"])
    return artifact
