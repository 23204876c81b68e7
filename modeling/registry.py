"""Model registry: what inference serves, and every status change (gate, admin) with its audit record.

Hot reload: get_served_model runs one indexed query per call to find the
active artifact, and loads (sha256-checked) only when that id changes, so a
promotion or rollback takes effect at the next candle in every process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.db.models.fields.json import KeyTransform

from features import definitions
from markets.models import Market
from modeling import serialization
from modeling.forecast import VOLATILITY_FEATURES, Forecaster
from modeling.models import ModelArtifact, ModelEvent
from modeling.training import PERSISTENCE

log = logging.getLogger(__name__)
Status = ModelArtifact.Status


class RegistryError(Exception):
    """A status change is not allowed; the message says why."""


@dataclass(frozen=True)
class ServedModel:
    artifact_id: int
    version: int
    algorithm: str
    feature_version: str
    forecaster: Forecaster

    def predict(self, row) -> tuple[Decimal, Decimal, Decimal]:
        """(price, lower, upper) at the horizon for a FeatureRow; the band is the 80 % interval."""
        return self.forecaster.predict_row(row.close, row.values)


# Per process: artifact id -> loaded model (None = refused, so it is logged once, not at every candle).
_loaded: dict[int, ServedModel | None] = {}


def get_served_model(market: Market, interval_s: int, horizon: int) -> ServedModel | None:
    """The active model for (market, interval_s, horizon), or None to serve persistence."""
    active = (
        ModelArtifact.objects.filter(market=market, interval_s=interval_s, horizon=horizon, status=Status.ACTIVE)
        .values_list("pk", flat=True)
        .first()
    )
    if active is None:
        return None
    if active not in _loaded:
        _loaded[active] = _load(ModelArtifact.objects.get(pk=active))
    return _loaded[active]


def served_persistence(market: Market, interval_s: int, horizon: int) -> Forecaster | None:
    """Persistence with the band the latest training run calibrated on past returns; None before any run.

    Every run stores it (metrics["persistence"]["band"]), promoted or not: with
    no active model, this is what the backtest serves too.
    """
    band = (
        ModelArtifact.objects.filter(
            market=market, interval_s=interval_s, horizon=horizon, feature_version=definitions.VERSION
        )
        .order_by("-version")
        # The band alone (the metrics are large), by explicit transforms: a key path string
        # ("metrics__persistence__band") leaves a reference cycle through the caller's frames
        # (Django keeps the FieldError it catches while resolving it), which kept a replay's
        # whole batch of trades alive until the next garbage collection.
        .annotate(band=KeyTransform("band", KeyTransform("persistence", "metrics")))
        .values_list("band", flat=True)
        .first()
    )
    if not band:
        return None
    q_lo, q_hi, floor = (float(v) for v in band)
    return Forecaster(PERSISTENCE, None, list(VOLATILITY_FEATURES), q_lo, q_hi, floor)


def _load(artifact: ModelArtifact) -> ServedModel | None:
    try:
        forecaster = load_forecaster(artifact)
    except serialization.ArtifactError:
        return None  # already logged; persistence is served instead
    log.info("loaded %s", artifact)
    return ServedModel(artifact.pk, artifact.version, artifact.algorithm, artifact.feature_version, forecaster)


def load_forecaster(artifact: ModelArtifact) -> Forecaster:
    payload = serialization.load(artifact.artifact, artifact.sha256, label=f"model {artifact.pk} ({artifact})")
    return Forecaster.from_payload(payload)


def next_version(market: Market, interval_s: int, horizon: int) -> int:
    current = ModelArtifact.objects.filter(market=market, interval_s=interval_s, horizon=horizon).aggregate(
        v=Max("version")
    )["v"]
    return (current or 0) + 1


def active_artifact(market: Market, interval_s: int, horizon: int) -> ModelArtifact | None:
    return ModelArtifact.objects.filter(
        market=market, interval_s=interval_s, horizon=horizon, status=Status.ACTIVE
    ).first()


def set_status(artifact: ModelArtifact, status: str, action: str, reason: str = "", actor=None) -> None:
    """Change one artifact's status and record it in the audit log."""
    previous = artifact.status
    artifact.status = status
    artifact.reason = reason or artifact.reason
    artifact.save(update_fields=["status", "reason"])
    ModelEvent.objects.create(
        artifact=artifact, action=action, from_status=previous, to_status=status, actor=actor, reason=reason
    )


@transaction.atomic
def promote(artifact: ModelArtifact, reason: str, actor=None, action: str = "promote") -> None:
    """Make artifact the active model of its (market, interval, horizon); the previous one is retired."""
    artifact = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status == Status.ACTIVE:
        raise RegistryError(f"{artifact} is already active")
    load_forecaster(artifact)  # never activate bytes that would be refused at serving time
    current = active_artifact(artifact.market, artifact.interval_s, artifact.horizon)
    if current is not None:
        set_status(current, Status.RETIRED, action, f"replaced by v{artifact.version}", actor)
    set_status(artifact, Status.ACTIVE, action, reason, actor)


@transaction.atomic
def retire(artifact: ModelArtifact, reason: str, actor=None) -> None:
    artifact = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if artifact.status == Status.RETIRED:
        raise RegistryError(f"{artifact} is already retired")
    set_status(artifact, Status.RETIRED, "retire", reason, actor)


@transaction.atomic
def rollback(market: Market, interval_s: int, horizon: int, actor=None) -> ModelArtifact:
    """Retire the active model and re-activate the one that was active before it."""
    current = active_artifact(market, interval_s, horizon)
    if current is None:
        raise RegistryError(f"no active model for {market} {interval_s}s +{horizon}")
    previous = (
        ModelArtifact.objects.filter(
            market=market,
            interval_s=interval_s,
            horizon=horizon,
            status=Status.RETIRED,
            events__to_status=Status.ACTIVE,
            version__lt=current.version,
        )
        .order_by("-version")
        .first()
    )
    if previous is None:
        raise RegistryError(f"{current} has no earlier active model to roll back to")
    set_status(current, Status.RETIRED, "rollback", f"rolled back to v{previous.version}", actor)
    load_forecaster(previous)
    set_status(previous, Status.ACTIVE, "rollback", f"rolled back from v{current.version}", actor)
    return previous
