"""What inference serves: the active model of a market (loaded once per process), or persistence.

Hot reload: lookups() runs one indexed query per call (once per pipeline step)
for the market's artifacts as they stand (how many, the newest, the active
ones); what was looked up from them (the active model, loaded sha256-checked,
the persistence band, the direction forecast) is kept per process until that
changes, so a promotion, rollback or new training run takes effect at the next
candle in every process. A
model that cannot be loaded, or that raises while predicting, is not served:
persistence is, labelled as such, and the failure is recorded once per
process as a model event (Admin → Model events).

The direction forecast (P(up | move), P(move)) comes from the training runs
of the market's feature set and target whatever the price model's status:
for each probability, the newest run whose gate was decisive says what is
served (modeling.direction.served_run): its model if it beat the base rate
significantly, else the base rate of the newest run, labelled "base rate".

scikit-learn and skops are imported only when a model is loaded, so a web
process that only reads predictions never imports them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Max, Q
from django.db.models.fields.json import KeyTransform

from features.definitions import VERSION
from markets.models import Market
from modeling.direction import BASE_RATE, MODEL, DirectionForecaster, served_run
from modeling.forecast import PERSISTENCE, VOLATILITY_BY_TARGET, Forecaster
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

    @property
    def target(self) -> str:
        return getattr(self.forecaster, "target", "close")

    def predict(self, row, base: Decimal | None = None) -> tuple[Decimal, Decimal, Decimal]:
        """(price, lower, upper) at the horizon for a FeatureRow; the band is the 80 % interval.

        base is the target's price at the row's window end (default: the row's close).
        """
        return self.forecaster.predict_row(row.close if base is None else base, row.values)


# Per process: artifact id -> loaded model (None = refused, so it is logged once, not at every candle).
_loaded: dict[int, ServedModel | None] = {}
_directions: dict[int, DirectionForecaster | None] = {}  # artifact id -> its run's direction forecast
RUNS_LOOKED_AT = 200  # newest training runs searched for the served direction model
_failed: set[int] = set()  # artifacts whose prediction failure is already recorded in this process


class Lookups:
    """What one market serves at one interval, looked up once while its artifacts stand as they are."""

    def __init__(self, market: Market, interval_s: int, active: dict[int, int]):
        self.market, self.interval_s = market, interval_s
        self.active = active  # horizon -> active artifact id
        self.bands: dict[tuple, Forecaster | None] = {}
        self.directions: dict[tuple, ServedDirection | None] = {}

    def band(self, horizon: int, version: str, target: str) -> Forecaster | None:
        key = (horizon, version, target)
        if key not in self.bands:
            self.bands[key] = served_persistence(self.market, self.interval_s, horizon, version, target)
        return self.bands[key]

    def direction(self, horizon: int, version: str, target: str) -> ServedDirection | None:
        key = (horizon, version, target)
        if key not in self.directions:
            self.directions[key] = served_direction(self.market, self.interval_s, horizon, version, target)
        return self.directions[key]


_lookups: dict[tuple[int, int], tuple[tuple, Lookups]] = {}  # (market id, interval) -> (artifacts' state, lookups)


def lookups(market: Market, interval_s: int) -> Lookups:
    """The market's Lookups at the interval; one query to tell whether its artifacts changed since the last call."""
    state = ModelArtifact.objects.filter(market=market, interval_s=interval_s).aggregate(
        count=Count("pk"),
        newest=Max("pk"),
        active=ArrayAgg("pk", filter=Q(status=Status.ACTIVE), order_by="pk", default=[]),
        horizons=ArrayAgg("horizon", filter=Q(status=Status.ACTIVE), order_by="pk", default=[]),
    )
    fingerprint = (state["count"], state["newest"], tuple(state["active"]))
    key = (market.pk, interval_s)
    cached = _lookups.get(key)
    if cached is None or cached[0] != fingerprint:
        # Two active at a horizon only for a moment of a promotion: the newer one is served, as it will be.
        active = dict(zip(state["horizons"], state["active"], strict=True))
        cached = _lookups[key] = (fingerprint, Lookups(market, interval_s, active))
    return cached[1]


def get_served_model(market: Market, interval_s: int, horizon: int, found: Lookups | None = None) -> ServedModel | None:
    """The active model for (market, interval_s, horizon), or None to serve persistence (found: its lookups)."""
    active = (found or lookups(market, interval_s)).active.get(horizon)
    if active is None:
        return None
    if active not in _loaded:
        _loaded[active] = _load(ModelArtifact.objects.get(pk=active))
    return _loaded[active]


def served_persistence(
    market: Market, interval_s: int, horizon: int, version: str = VERSION, target: str = "close"
) -> Forecaster | None:
    """Persistence with the band the latest training run calibrated on past returns; None before any run.

    Every run stores it (metrics["persistence"]["band"]), promoted or not: with
    no active model, this is what the backtest serves too. Only runs of the
    same feature set and target count: a band of trade closes does not fit the mid.
    """
    band = (
        ModelArtifact.objects.filter(
            market=market, interval_s=interval_s, horizon=horizon, feature_version=version, target=target
        )
        .order_by("-version")
        # The band alone (the metrics are large); explicit transforms, as a key path string leaves a reference cycle.
        .annotate(band=KeyTransform("band", KeyTransform("persistence", "metrics")))
        .values_list("band", flat=True)
        .first()
    )
    if not band:
        return None
    q_lo, q_hi, floor = (float(v) for v in band)
    volatility = VOLATILITY_BY_TARGET[target]
    return Forecaster(PERSISTENCE, None, list(volatility), q_lo, q_hi, floor, target=target, volatility=volatility)


@dataclass(frozen=True)
class ServedDirection:
    """The direction forecast served for one (market, interval, horizon, feature set, target)."""

    up: DirectionForecaster | None  # the run whose P(up) model is served; None: the base rate
    move: DirectionForecaster | None
    up_base: float  # the newest run's base rates
    move_base: float

    @property
    def source(self) -> str:
        return MODEL if self.up is not None else BASE_RATE

    @property
    def model_name(self) -> str:
        """The candidate serving P(up) (modeling.direction.CANDIDATES), or the base rate."""
        return self.up.model_name if self.up is not None else BASE_RATE

    def predict(self, values: dict) -> tuple[float, float]:
        """(P(up | move), P(move)) for one feature row's values."""
        p_up = self.up.predict_row(values)[0] if self.up is not None else self.up_base
        p_move = self.move.predict_row(values)[1] if self.move is not None else self.move_base
        return p_up, p_move


def served_direction(
    market: Market, interval_s: int, horizon: int, version: str, target: str
) -> ServedDirection | None:
    """The direction forecast to serve from the market's training runs; None before any run."""
    # Only the verdicts and base rates (small scalars), not the runs' whole metrics.
    keys = {
        f"{name}_{key}": KeyTransform(key, KeyTransform(name, KeyTransform("direction", "metrics")))
        for name, key in (("up", "source"), ("up", "loses"), ("move", "source"), ("move", "loses"))
    }
    keys |= {
        f"base_{name}": KeyTransform(name, KeyTransform("base", KeyTransform("direction", "metrics")))
        for name in ("up", "move")
    }
    runs = list(
        ModelArtifact.objects.filter(
            market=market, interval_s=interval_s, horizon=horizon, feature_version=version, target=target
        )
        .order_by("-version")
        .annotate(**keys)
        .values("pk", *keys)[:RUNS_LOOKED_AT]
    )
    runs = [run for run in runs if run["base_up"] is not None]  # runs from before the direction forecast have none
    if not runs:
        return None
    chosen = {}
    for name in ("up", "move"):
        verdicts = [{"source": run[f"{name}_source"], "loses": run[f"{name}_loses"]} for run in runs]
        index = served_run(verdicts)
        chosen[name] = None if index is None else _direction(runs[index]["pk"])
        if chosen[name] is not None and getattr(chosen[name], name).source != MODEL:
            chosen[name] = None  # its gate passed but no model was fitted (too few rows of one outcome)
    return ServedDirection(chosen["up"], chosen["move"], float(runs[0]["base_up"]), float(runs[0]["base_move"]))


def _direction(artifact_id: int) -> DirectionForecaster | None:
    """The direction forecast stored in an artifact (loaded once per process; None if refused)."""
    if artifact_id not in _directions:
        from modeling import serialization

        artifact = ModelArtifact.objects.get(pk=artifact_id)
        try:
            payload = serialization.load(artifact.artifact, artifact.sha256, label=f"model {artifact.pk} ({artifact})")
            _directions[artifact_id] = DirectionForecaster.from_payload(payload["direction"])
        except (serialization.ArtifactError, KeyError) as exc:
            record_failure(artifact_id, f"direction forecast not loaded: {exc!r}", "the base rate")
            _directions[artifact_id] = None
    return _directions[artifact_id]


def record_failure(artifact_id: int, what: str, instead: str = "persistence") -> None:
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
            reason=f"{what}; {instead} served instead"[:2000],
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
