"""What the trader pages show, read from the database (views stay thin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q

from core import horizons
from core.formatting import DEFAULT_DECIMALS, bps, count, model_label, up_call
from inference.metrics import live_metrics, model_live_metrics
from inference.models import Prediction
from markets.models import BookWindow, Candle, Market
from modeling.models import ModelArtifact, ModelEvent

RANGES = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
# Candle interval drawn per range (seconds, rounded up to a multiple of the market's): every range fits a laptop
# screen whole, at 90-360 candles.
RANGE_INTERVALS = {"15m": 10, "1h": 10, "6h": 60, "24h": 300}
DEFAULT_RANGE = "1h"
RECENT_PREDICTIONS = 20
PRECISION_SAMPLE = 500  # newest candles whose prices give the market's decimals
MAX_DECIMALS = 8
LIVE_LOSS_MIN_WINDOWS = 30  # fewer scored windows say nothing about a live loss to persistence
SPARKLINE_S = 3600
SPARKLINE_POINTS = 120
SPARK_W, SPARK_H = 300, 64


def chart_interval(market: Market, chart_range: str) -> int:
    """The candle interval the chart draws for a range: a multiple of the market's interval."""
    target = RANGE_INTERVALS[chart_range]
    return max(1, -(-target // market.interval_s)) * market.interval_s


UNITS = ((3600, "h", "hour"), (60, "min", "minute"), (1, "s", "second"))  # (seconds, short name, long name)


def in_units(seconds: int) -> tuple[int, str, str]:
    """(count, short name, long name) of the largest unit seconds is a whole number of."""
    return next((seconds // size, short, long) for size, short, long in UNITS if seconds % size == 0)


def duration_label(seconds: int) -> str:
    """How far ahead a horizon is: 10 s, 1 min."""
    amount, short, _ = in_units(seconds)
    return f"{amount} {short}"


def interval_label(seconds: int) -> str:
    """A candle interval: 10-second, 5-minute."""
    amount, _, long = in_units(seconds)
    return f"{amount}-{long}"


@dataclass
class MarketSummary:
    """A market at one horizon: its latest prediction, the model serving it and its live metrics."""

    market: Market
    last_candle: Candle | None
    prediction: Prediction | None
    active_model: ModelArtifact | None
    metrics: dict  # inference.metrics.live_metrics(market, horizon): served overall, and per served forecaster
    decimals: int = DEFAULT_DECIMALS
    notes: list[Note] = field(default_factory=list)  # warnings about the model on show (gate, live loss)
    sparkline: dict | None = None
    horizon: int = 1

    @property
    def ahead(self) -> str:
        """The horizon as a duration: "10 s", "1 min"."""
        return duration_label(self.horizon * self.market.interval_s)

    @property
    def direction(self) -> str | None:
        return direction(self.prediction)

    @property
    def forecasters(self) -> list[dict]:
        """Live metrics per served forecaster, the one that made the latest prediction first, then newest first."""
        return forecaster_groups(self.metrics, self.prediction)

    @property
    def current(self) -> dict | None:
        """Live metrics of the forecaster that made the latest prediction (None before it was scored)."""
        groups = self.forecasters
        return groups[0] if groups and groups[0]["serving"] else None


def forecaster_groups(metrics: dict, prediction: Prediction | None) -> list[dict]:
    current_id = prediction.model_id if prediction is not None else False
    groups = []
    for group in metrics.get("models", []):
        served_by = group["served_by"]
        groups.append(
            {
                **group,
                "label": model_label(served_by),
                "is_model": served_by["id"] is not None,
                "serving": prediction is not None and served_by["id"] == current_id,
            }
        )
    groups.sort(key=lambda g: g["until"] or "", reverse=True)
    groups.sort(key=lambda g: not g["serving"])
    return groups


def direction(prediction: Prediction | None) -> str | None:
    """'up', 'down' or 'flat': the call of the prediction's P(up) as shown (core.formatting.up_call)."""
    return None if prediction is None else up_call(prediction.p_up)


def last_candle(market: Market) -> Candle | None:
    return Candle.objects.filter(market=market, interval_s=market.interval_s).order_by("-start").first()


def price_decimals(market: Market) -> int:
    """The market's price precision: the most decimals among its newest candles' prices (2 with no candle)."""
    rows = (
        Candle.objects.filter(market=market, interval_s=market.interval_s, trades__gt=0)
        .order_by("-start")
        .values_list("open", "high", "low", "close")[:PRECISION_SAMPLE]
    )
    places = [max(0, -value.normalize().as_tuple().exponent) for row in rows for value in row]
    return min(max(places), MAX_DECIMALS) if places else DEFAULT_DECIMALS


def latest_book(market: Market) -> BookWindow | None:
    """The market's newest stored book window (its top of book at the window end), if it has a book."""
    return BookWindow.objects.filter(market=market, interval_s=market.interval_s).order_by("-start").first()


def latest_prediction(market: Market, horizon: int) -> Prediction | None:
    return (
        Prediction.objects.filter(market=market, interval_s=market.interval_s, horizon=horizon)
        .select_related("model")
        .order_by("-made_at")
        .first()
    )


def active_model(market: Market, horizon: int) -> ModelArtifact | None:
    return ModelArtifact.objects.filter(
        market=market,
        interval_s=market.interval_s,
        horizon=horizon,
        status=ModelArtifact.Status.ACTIVE,
    ).first()


def gate_verdict(artifact: ModelArtifact) -> ModelEvent | None:
    """The promotion gate's decision on a model (its training run's "gate" event)."""
    return artifact.events.filter(action="gate").order_by("at").first()


@dataclass
class Note:
    """A warning about the model on show: a short text, and the evidence (shown folded) when there is more."""

    text: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.text} {self.detail}".strip()


def model_notes(model: ModelArtifact | None, metrics: dict | None = None) -> list[Note]:
    """Why the model on show may not deserve trust: forced past the gate, or losing to persistence live."""
    if model is None:
        return []
    notes = []
    label = model_label(model)
    verdict = gate_verdict(model)
    if verdict is not None and verdict.to_status != ModelArtifact.Status.ACTIVE:
        promoted = model.events.filter(to_status=ModelArtifact.Status.ACTIVE).order_by("-at").first()
        how = f" Promoted anyway: {promoted.reason}." if promoted is not None and promoted.reason else ""
        notes.append(
            Note(
                f"{label} is served although the promotion gate rejected it.", f"The gate said: {verdict.reason}.{how}"
            )
        )
    live = metrics if metrics is not None else model_live_metrics(model)
    if live and live["count"] >= LIVE_LOSS_MIN_WINDOWS:
        mine, theirs = live["model"]["rmse"], live["persistence"]["rmse"]
        if mine > theirs:
            mine_bps, theirs_bps = live["model"].get("rmse_bps"), live["persistence"].get("rmse_bps")
            notes.append(
                Note(
                    f"Live, {label} loses to persistence: RMSE {bps(mine_bps)} vs {bps(theirs_bps)} bp "
                    f"over its last {count(live['count'])} scored windows."
                )
            )
    return notes


def at_horizon(market: Market, horizon: int, last: Candle | None, decimals: int) -> MarketSummary:
    metrics = live_metrics(market, horizon)
    model = active_model(market, horizon)
    summary = MarketSummary(
        market, last, latest_prediction(market, horizon), model, metrics, decimals=decimals, horizon=horizon
    )
    if model is not None:
        own = next((g for g in metrics["models"] if g["served_by"]["id"] == model.pk), None)
        summary.notes = model_notes(model, own or {"count": 0})
    return summary


def summarize(market: Market, sparkline: bool = False, horizon: int | None = None) -> MarketSummary:
    """The market at horizon, by default its shortest (the one the overview, the chart and the first card show)."""
    summary = at_horizon(market, horizon or horizons.shortest(), last_candle(market), price_decimals(market))
    if sparkline:
        summary.sparkline = sparkline_of(market, summary.last_candle)
    return summary


def page_horizon(raw: str | None) -> int:
    """The horizon a market page asks for (?horizon=N): one of PREDICTION_HORIZONS, else the shortest."""
    configured = horizons.configured()
    return int(raw) if raw and raw.isdigit() and int(raw) in configured else horizons.shortest()


def horizon_summaries(first: MarketSummary) -> list[MarketSummary]:
    """The market at every horizon, shortest first (first, a summary at one of them, is reused)."""
    return [
        first if h == first.horizon else at_horizon(first.market, h, first.last_candle, first.decimals)
        for h in horizons.configured()
    ]


def overview() -> list[MarketSummary]:
    """Enabled markets, and every market with candles (replayed ones too, labelled as such)."""
    has_candles = Exists(Candle.objects.filter(market=OuterRef("pk")))
    return [summarize(market, sparkline=True) for market in Market.objects.filter(Q(enabled=True) | has_candles)]


def recent_predictions(market: Market, limit: int = RECENT_PREDICTIONS) -> list[Prediction]:
    """The newest predictions at every horizon, newest first."""
    return list(
        Prediction.objects.filter(market=market, interval_s=market.interval_s).order_by("-made_at", "horizon")[:limit]
    )


def model_history() -> dict[Market, list[ModelArtifact]]:
    """Every model, newest first, grouped by market; .live holds its live metrics (inference.metrics)."""
    history: dict[Market, list[ModelArtifact]] = {}
    for artifact in ModelArtifact.objects.select_related("market").defer("artifact").order_by("market", "-created_at"):
        artifact.live = model_live_metrics(artifact)
        artifact.gate = gate_verdict(artifact)
        artifact.notes = model_notes(artifact, artifact.live) if artifact.status == ModelArtifact.Status.ACTIVE else []
        history.setdefault(artifact.market, []).append(artifact)
    return history


def sparkline_of(market: Market, last: Candle | None) -> dict | None:
    """The last hour as an inline SVG: closes as a line, the predictions' 80 % band as an area behind it.

    Coordinates are computed here (viewBox SPARK_W x SPARK_H), so the overview draws it without any script.
    """
    if last is None:
        return None
    end = last.start + timedelta(seconds=market.interval_s)
    start = end - timedelta(seconds=SPARKLINE_S)
    closes = list(
        Candle.objects.filter(market=market, interval_s=market.interval_s, start__gte=start)
        .order_by("start")
        .values_list("start", "close")
    )
    step = max(1, len(closes) // SPARKLINE_POINTS)
    closes = closes[::-step][::-1]  # keep the newest
    horizon = horizons.shortest()
    bands = list(
        Prediction.objects.filter(
            market=market,
            interval_s=market.interval_s,
            horizon=horizon,
            target_time__gt=start,
            target_time__lte=end + timedelta(seconds=market.interval_s * horizon),
        )
        .order_by("target_time")
        .values_list("target_time", "lower", "upper")
    )
    bands = [b for b in bands if b[1] < b[2]][::-step][::-1]
    values = [float(c) for _, c in closes] + [float(v) for _, lo, hi in bands for v in (lo, hi)]
    if len(closes) < 2:
        return None
    lo, hi = min(values), max(values)
    span_t = (end - start).total_seconds() + market.interval_s * horizon
    pad = 3

    def x(t) -> float:
        return round((t - start).total_seconds() / span_t * SPARK_W, 1)

    def y(v) -> float:
        return round(pad + (hi - float(v)) / ((hi - lo) or 1) * (SPARK_H - 2 * pad), 1)

    # A candle's close is at its end.
    line = " ".join(f"{x(t + timedelta(seconds=market.interval_s))},{y(c)}" for t, c in closes)
    band = ""
    if len(bands) >= 2:
        upper = [f"{x(t)},{y(u)}" for t, _, u in bands]
        lower = [f"{x(t)},{y(lo_)}" for t, lo_, _ in reversed(bands)]
        band = " ".join(upper + lower)
    first, latest = closes[0][1], closes[-1][1]
    return {
        "width": SPARK_W,
        "height": SPARK_H,
        "line": line,
        "band": band,
        "first": first,
        "last": latest,
        "trend": "up" if latest > first else "down" if latest < first else "flat",
    }
