"""What the trader pages show, read from the database (views stay thin)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from inference.metrics import live_metrics, model_live_metrics
from inference.models import Prediction
from markets.models import Candle, Market
from modeling.models import ModelArtifact

RANGES = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
DEFAULT_RANGE = "1h"
RECENT_PREDICTIONS = 20


@dataclass
class MarketSummary:
    market: Market
    last_candle: Candle | None
    prediction: Prediction | None
    active_model: ModelArtifact | None
    metrics: dict  # the inference app's rolling live metrics of all served predictions, next to persistence

    @property
    def direction(self) -> str:
        return direction(self.prediction)


def direction(prediction: Prediction | None) -> str:
    """'up', 'down' or 'flat': the predicted price against the close it started from."""
    if prediction is None or prediction.price == prediction.base_close:
        return "flat"
    return "up" if prediction.price > prediction.base_close else "down"


def last_candle(market: Market) -> Candle | None:
    return Candle.objects.filter(market=market, interval_s=market.interval_s).order_by("-start").first()


def latest_prediction(market: Market) -> Prediction | None:
    return (
        Prediction.objects.filter(market=market, interval_s=market.interval_s, horizon=settings.PREDICTION_HORIZON)
        .select_related("model")
        .order_by("-made_at")
        .first()
    )


def active_model(market: Market) -> ModelArtifact | None:
    return ModelArtifact.objects.filter(
        market=market,
        interval_s=market.interval_s,
        horizon=settings.PREDICTION_HORIZON,
        status=ModelArtifact.Status.ACTIVE,
    ).first()


def summarize(market: Market) -> MarketSummary:
    return MarketSummary(
        market, last_candle(market), latest_prediction(market), active_model(market), live_metrics(market)["served"]
    )


def overview() -> list[MarketSummary]:
    return [summarize(market) for market in Market.objects.filter(enabled=True)]


def recent_predictions(market: Market, limit: int = RECENT_PREDICTIONS) -> list[Prediction]:
    return list(
        Prediction.objects.filter(
            market=market, interval_s=market.interval_s, horizon=settings.PREDICTION_HORIZON
        ).order_by("-made_at")[:limit]
    )


def model_history() -> dict[Market, list[ModelArtifact]]:
    """Every model, newest first, grouped by market; .live holds its live metrics (inference.metrics)."""
    history: dict[Market, list[ModelArtifact]] = {}
    for artifact in ModelArtifact.objects.select_related("market").order_by("market", "-created_at"):
        artifact.live = model_live_metrics(artifact)
        history.setdefault(artifact.market, []).append(artifact)
    return history
