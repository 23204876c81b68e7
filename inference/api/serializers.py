"""REST wire formats: decimals as exact strings, UTC times ending in Z.

A prediction and a candle are rendered by inference.payloads, as the websocket pushes them;
their fields here describe them to the schema.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core import horizons
from core.durations import parse_duration
from inference.models import Prediction
from inference.payloads import candle_payload, decimal_str, prediction_payload
from markets.models import BookWindow, Candle, Market
from modeling.direction import MODEL_NAMES
from modeling.models import ModelArtifact


@extend_schema_field(OpenApiTypes.STR)
class ExactDecimalField(serializers.Field):
    def to_representation(self, value: Decimal) -> str:
        return decimal_str(value)


class MarketSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)

    class Meta:
        model = Market
        fields = [
            "name",
            "exchange",
            "base",
            "quote",
            "symbol",
            "enabled",
            "interval_s",
            "stream_state",
            "stream_detail",
            "stream_updated_at",
            "last_trade_at",
        ]


class BookTopSerializer(serializers.ModelSerializer):
    """Top of book as of a book window's end: the newest one stored is the market's latest known book."""

    bid = ExactDecimalField(source="bid_price")
    ask = ExactDecimalField(source="ask_price")
    spread = serializers.SerializerMethodField()
    mid = ExactDecimalField()
    updated = serializers.SerializerMethodField()

    class Meta:
        model = BookWindow
        fields = ["bid", "ask", "spread", "mid", "updated"]

    @extend_schema_field(OpenApiTypes.STR)
    def get_spread(self, window: BookWindow) -> str:
        return decimal_str(window.ask_price - window.bid_price)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_updated(self, window: BookWindow) -> str:
        return serializers.DateTimeField().to_representation(window.start + timedelta(seconds=window.interval_s))


class MarketDetailSerializer(MarketSerializer):
    """One market; `book` is its latest stored top of book (null without book windows)."""

    book = serializers.SerializerMethodField()

    class Meta(MarketSerializer.Meta):
        fields = [*MarketSerializer.Meta.fields, "book"]

    @extend_schema_field(BookTopSerializer(allow_null=True))
    def get_book(self, market: Market) -> dict | None:
        window = BookWindow.objects.filter(market=market, interval_s=market.interval_s).order_by("-start").first()
        return BookTopSerializer(window).data if window is not None else None


class CandleSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.name", read_only=True)
    end = serializers.SerializerMethodField()
    open = ExactDecimalField()
    high = ExactDecimalField()
    low = ExactDecimalField()
    close = ExactDecimalField()
    volume = ExactDecimalField()
    buy_volume = ExactDecimalField()
    sell_volume = ExactDecimalField()
    vwap = ExactDecimalField(allow_null=True)

    class Meta:
        model = Candle
        fields = [
            "market",
            "interval_s",
            "start",
            "end",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "buy_volume",
            "sell_volume",
            "trades",
            "vwap",
            "final",
            "amended",
        ]

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_end(self, candle: Candle) -> str:
        return self.fields["start"].to_representation(candle.start + timedelta(seconds=candle.interval_s))

    def to_representation(self, instance: Candle) -> dict:
        return candle_payload(instance)


class ServedModelSerializer(serializers.Serializer):
    """Which model made a prediction; id and version are null for persistence."""

    id = serializers.IntegerField(source="model_id", allow_null=True)
    version = serializers.IntegerField(source="model_version", allow_null=True)
    algorithm = serializers.CharField()


class PredictionSerializer(serializers.ModelSerializer):
    """A prediction: the target's price (the close, or the book's mid) with its 80 % interval, and the direction.

    last_close is the target's price at made_at (the mid for target "mid"); p_up is
    P(higher rather than lower at target_time | it moves), p_move P(it moves),
    direction_source "model" or "base rate" (null before any training run),
    direction_model the direction model that gave p_up ("microprice", "logistic",
    "boosted" or "base rate"; null before any training run), and p_up_base the
    base rate of P(up) in the training window.
    """

    market = serializers.CharField(source="market.name", read_only=True)
    model = ServedModelSerializer(source="*")
    price = ExactDecimalField()
    lower = ExactDecimalField()
    upper = ExactDecimalField()
    last_close = ExactDecimalField(source="base_close")
    realized = ExactDecimalField(allow_null=True)
    direction_source = serializers.SerializerMethodField()
    direction_model = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "market",
            "interval_s",
            "horizon",
            "made_at",
            "target_time",
            "target",
            "price",
            "lower",
            "upper",
            "last_close",
            "p_up",
            "p_move",
            "direction_source",
            "direction_model",
            "p_up_base",
            "model",
            "latency_ms",
            "realized",
            "scored_at",
        ]

    @extend_schema_field(
        {"type": "string", "enum": ["model", "base rate"], "nullable": True, "description": "what gave p_up"}
    )
    def get_direction_source(self, prediction: Prediction) -> str | None:
        return prediction.direction_source or None

    @extend_schema_field(
        {"type": "string", "enum": list(MODEL_NAMES), "nullable": True, "description": "the model that gave p_up"}
    )
    def get_direction_model(self, prediction: Prediction) -> str | None:
        return prediction.direction_model or None

    def to_representation(self, instance: Prediction) -> dict:
        return prediction_payload(instance)


class ModelArtifactSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.name", read_only=True)

    class Meta:
        model = ModelArtifact
        fields = [
            "id",
            "market",
            "interval_s",
            "horizon",
            "feature_version",
            "target",
            "direction_source",
            "direction_model",
            "algorithm",
            "version",
            "status",
            "reason",
            "params",
            "train_start",
            "train_end",
            "metrics",
            "sha256",
            "created_at",
        ]


class ModelArtifactDetailSerializer(ModelArtifactSerializer):
    live_metrics = serializers.SerializerMethodField()

    class Meta(ModelArtifactSerializer.Meta):
        fields = [*ModelArtifactSerializer.Meta.fields, "live_metrics"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_live_metrics(self, artifact: ModelArtifact) -> dict:
        from inference.metrics import model_live_metrics

        return model_live_metrics(artifact)


class PageQuerySerializer(serializers.Serializer):
    """Query parameters of every paginated endpoint."""

    limit = serializers.IntegerField(required=False, min_value=1, help_text="page size")
    cursor = serializers.CharField(required=False, help_text="opaque, from next/previous")

    def validate_limit(self, value: int) -> int:
        if value > settings.API_MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"must be at most {settings.API_MAX_PAGE_SIZE}")
        return value


class HistoryQuerySerializer(PageQuerySerializer):
    """Query parameters of the candle and prediction history endpoints."""

    start = serializers.DateTimeField(required=False, help_text="inclusive, ISO-8601")
    end = serializers.DateTimeField(required=False, help_text="exclusive, ISO-8601")

    def validate(self, attrs):
        if "start" in attrs and "end" in attrs and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "must be after start"})
        return attrs


class CandleQuerySerializer(HistoryQuerySerializer):
    """The candle history also takes ?interval: candles aggregated from the stored ones."""

    interval = serializers.CharField(
        required=False,
        help_text="candle interval, a multiple of the market's, e.g. 1m or 5m (default: the market's interval)",
    )

    def validate_interval(self, value: str) -> int:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


ALL_HORIZONS = "all"


def horizon_value(value: str) -> int:
    try:
        return horizons.parse(value)
    except horizons.HorizonError as exc:
        raise serializers.ValidationError(str(exc)) from None


class PredictionQuerySerializer(HistoryQuerySerializer):
    """The prediction history also takes ?horizon: one horizon's predictions."""

    horizon = serializers.CharField(
        required=False, help_text="candle intervals ahead, one of PREDICTION_HORIZONS (default: every horizon)"
    )

    def validate_horizon(self, value: str) -> int:
        return horizon_value(value)


class HorizonQuerySerializer(serializers.Serializer):
    """?horizon of the latest prediction and the live metrics."""

    horizon = serializers.CharField(
        required=False,
        help_text="candle intervals ahead, one of PREDICTION_HORIZONS (default: the shortest), "
        "or all: a list with one item per horizon, shortest first",
    )

    def validate_horizon(self, value: str) -> int | str:
        return value if value == ALL_HORIZONS else horizon_value(value)


class ModelQuerySerializer(PageQuerySerializer):
    market = serializers.CharField(required=False, help_text="EXCHANGE:BASE-QUOTE")
