"""What inference serves: the active model of a market (loaded once per process), or persistence.

Hot reload: get_served_model runs one indexed query per call to find the
active artifact and loads it (sha256-checked) only when that id changes, so a
promotion or rollback takes effect at the next candle in every process. A
model that cannot be loaded, or that raises while predicting, is not served:
persistence is, labelled as such, and the failure is recorded once per
process as a model event (Admin → Model events).

scikit-learn and skops are imported only when a model is loaded, so a web
process that only reads predictions never imports them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db.models.fields.json import KeyTransform

from features import definitions
from markets.models import Market
from modeling.forecast import PERSISTENCE, VOLATILITY_FEATURES, Forecaster
from modeling.models import ModelArtifact, ModelEvent

log = logging.getLogger(__name__)
Status = ModelArtifact.Status


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
_failed: set[int] = set()  # artifacts whose prediction failure is already recorded in this process


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


def record_failure(artifact_id: int, what: str) -> None:
    """A model event for a model that could not be served (once per artifact and process)."""
    if artifact_id in _failed:
        return
    _failed.add(artifact_id)
    artifact = ModelArtifact.objects.filter(pk=artifact_id).first()
    if artifact is not None:
        ModelEvent.objects.create(
            artifact=artifact,
            action="serve failed",
            from_status=artifact.status,
            to_status=artifact.status,
            reason=f"{what}; persistence served instead"[:2000],
        )


def _load(artifact: ModelArtifact) -> ServedModel | None:
    from modeling import registry, serialization  # scikit-learn and skops come with the first model

    try:
        forecaster = registry.load_forecaster(artifact)
    except serialization.ArtifactError as exc:
        record_failure(artifact.pk, f"not loaded: {exc}")
        return None  # already logged; persistence is served instead
    log.info("loaded %s", artifact)
    return ServedModel(artifact.pk, artifact.version, artifact.algorithm, artifact.feature_version, forecaster)
