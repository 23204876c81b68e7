"""REST endpoints under /api/v1/: thin views over the models and inference.metrics (inference.readcache caches them)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core import horizons
from inference.api.serializers import (
    ALL_HORIZONS,
    CandleQuerySerializer,
    CandleSerializer,
    HistoryQuerySerializer,
    HorizonQuerySerializer,
    MarketDetailSerializer,
    MarketSerializer,
    ModelArtifactDetailSerializer,
    ModelArtifactSerializer,
    ModelQuerySerializer,
    PredictionQuerySerializer,
    PredictionSerializer,
)
from inference.metrics import live_metrics
from markets.models import Candle, Market
from markets.names import MarketError, get_market
from markets.trades.candles import epoch_to_datetime, merge
from markets.trades.stored import bar_from_candle, candle_from_bar
from modeling.models import ModelArtifact

MARKET_PARAM = OpenApiParameter("market", OpenApiTypes.STR, OpenApiParameter.PATH, description="e.g. kraken:ETH-USD")


def market_or_404(name: str) -> Market:
    try:
        return get_market(name)
    except MarketError as exc:
        raise NotFound(str(exc)) from None


def validated_query(serializer_class, request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class Pagination(CursorPagination):
    """Cursor pagination; a page size above API_MAX_PAGE_SIZE is refused by the query serializer."""

    page_size_query_param = "limit"

    def get_page_size(self, request) -> int:
        limit = request.query_params.get(self.page_size_query_param)
        return int(limit) if limit else settings.API_PAGE_SIZE

    def decode_cursor(self, request):
        """DRF's decoding, and the cursor must be one DRF writes: base64 is lenient (it skips characters outside
        its alphabet, and any run of letters decodes to something), so a garbled cursor would read as page 1."""
        cursor = super().decode_cursor(request)
        if cursor is not None:
            given = request.query_params[self.cursor_query_param]
            canonical = parse_qs(urlsplit(self.encode_cursor(cursor)).query).get(self.cursor_query_param, [""])[0]
            if given != canonical:
                raise NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        # A cursor is client input: undecodable, or decodable to a position of the wrong type.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, ValueError, OverflowError):
            raise ValidationError({"cursor": ["invalid cursor"]}) from None


class TimeOrderedPagination(Pagination):
    ordering = "start"


class MadeAtPagination(Pagination):
    ordering = "made_at"


class NewestFirstPagination(Pagination):
    ordering = "-id"


def aggregate_candle(market: Market, interval_s: int, start: int, candles: list[Candle]) -> Candle:
    """Consecutive stored candles as one longer, unsaved Candle (open of the first, close of the last, …)."""
    merged = merge([bar_from_candle(candle) for candle in candles], start)
    complete = len(candles) == interval_s // market.interval_s
    final = complete and all(c.final for c in candles)
    return candle_from_bar(market, merged, interval_s, final=final, amended=sum(c.amended for c in candles))


class MarketList(generics.ListAPIView):
    """All markets with their stream state."""

    queryset = Market.objects.all()
    serializer_class = MarketSerializer
    pagination_class = None


@extend_schema(parameters=[MARKET_PARAM])
class MarketDetail(generics.RetrieveAPIView):
    """One market with its stream state and latest top of book."""

    serializer_class = MarketDetailSerializer

    def get_object(self) -> Market:
        return market_or_404(self.kwargs["market"])


class HistoryView(generics.ListAPIView):
    """Shared by candle and prediction history: ?start (inclusive), ?end (exclusive), ?limit, ?cursor."""

    time_field = ""
    query_serializer = HistoryQuerySerializer

    def get_queryset(self):
        market = market_or_404(self.kwargs["market"])
        query = self.query = validated_query(self.query_serializer, self.request)
        queryset = self.related(market)
        if "start" in query:
            queryset = queryset.filter(**{f"{self.time_field}__gte": query["start"]})
        if "end" in query:
            queryset = queryset.filter(**{f"{self.time_field}__lt": query["end"]})
        return queryset


@extend_schema(parameters=[MARKET_PARAM, CandleQuerySerializer])
class CandleList(HistoryView):
    """The market's candles, oldest first: stored ones at its interval, or ?interval= aggregated from them."""

    serializer_class = CandleSerializer
    pagination_class = TimeOrderedPagination
    time_field = "start"

    def related(self, market: Market):
        return market.candles.filter(interval_s=market.interval_s)

    def list(self, request, *args, **kwargs):
        market = market_or_404(self.kwargs["market"])
        query = validated_query(CandleQuerySerializer, request)
        interval_s = query.get("interval", market.interval_s)
        if interval_s % market.interval_s:
            raise ValidationError(
                {"interval": [f"must be a multiple of the market's interval ({market.interval_s} s)"]}
            )
        if interval_s == market.interval_s:
            return super().list(request, *args, **kwargs)
        if "cursor" in query:
            raise ValidationError({"cursor": ["not used with interval: the next page is given by start"]})
        return self.aggregated(request, market, interval_s, query)

    def aggregated(self, request, market: Market, interval_s: int, query: dict) -> Response:
        """One page of candles merged from the stored ones (markets.trades.candles.merge, as export_candles does).

        A bar covers [t, t + interval) aligned to the epoch; the first is the first whose start is at or after
        ?start. A page holds at most ?limit bars; next is the same query from the following bar on.
        """
        limit = query.get("limit") or settings.API_PAGE_SIZE
        stored = self.related(market)
        start = query.get("start")
        if start is None:
            first = stored.order_by("start").values_list("start", flat=True).first()
            if first is None:
                return Response({"next": None, "previous": None, "results": []})
            start = first
        begin = -(-int(start.timestamp()) // interval_s) * interval_s  # the first bar starting at or after start
        stop = begin + limit * interval_s
        end = query.get("end")
        last = int(end.timestamp()) // interval_s * interval_s if end is not None else None  # bars wholly before end
        if last is not None:
            stop = min(stop, last)
        try:  # a long interval (or a start near the year 9999) puts the page's bars past what a datetime holds
            first_bar, stop_at = epoch_to_datetime(begin), epoch_to_datetime(max(stop, begin))
        except (ValueError, OverflowError, OSError):
            raise ValidationError({"interval": ["this page of bars would end after the year 9999"]}) from None
        rows = list(stored.filter(start__gte=first_bar, start__lt=stop_at).order_by("start"))
        groups: dict[int, list[Candle]] = {}
        for candle in rows:
            groups.setdefault(int(candle.start.timestamp()) // interval_s * interval_s, []).append(candle)
        results = [aggregate_candle(market, interval_s, bar_start, group) for bar_start, group in groups.items()]
        more = (last is None or stop < last) and stored.filter(start__gte=stop_at).exists()
        next_url = None
        if more:
            params = request.query_params.copy()
            params["start"] = stop_at.isoformat().replace("+00:00", "Z")
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"next": next_url, "previous": None, "results": CandleSerializer(results, many=True).data})


@extend_schema(parameters=[MARKET_PARAM, PredictionQuerySerializer])
class PredictionList(HistoryView):
    """The market's predictions by the time they were made, oldest first, with realized prices once scored:
    every horizon's (each item says its horizon), or ?horizon= one's."""

    serializer_class = PredictionSerializer
    pagination_class = MadeAtPagination
    time_field = "made_at"
    query_serializer = PredictionQuerySerializer

    def related(self, market: Market):
        predictions = market.predictions.filter(interval_s=market.interval_s)
        horizon = self.query.get("horizon")
        return predictions if horizon is None else predictions.filter(horizon=horizon)


def latest_data(market: Market, horizon: int) -> dict | None:
    """The market's newest prediction at a horizon, as the API renders it."""
    prediction = market.predictions.filter(horizon=horizon, interval_s=market.interval_s).order_by("-made_at").first()
    return None if prediction is None else PredictionSerializer(prediction).data


PREDICTION_REF = {"$ref": "#/components/schemas/Prediction"}  # PredictionList's items
# One prediction, or with ?horizon=all a list of them.
LATEST_RESPONSE = {"oneOf": [PREDICTION_REF, {"type": "array", "items": PREDICTION_REF}]}


@extend_schema(parameters=[MARKET_PARAM, HorizonQuerySerializer], responses={200: LATEST_RESPONSE})
class LatestPrediction(APIView):
    """The newest prediction of the market.

    At the shortest horizon, or ?horizon= another; ?horizon=all: a list of each horizon's, shortest first.
    """

    def get(self, request, market: str) -> Response:
        choice = validated_query(HorizonQuerySerializer, request).get("horizon") if request.query_params else None
        horizon = horizons.shortest() if choice in (None, ALL_HORIZONS) else choice
        found = market_or_404(market)
        if choice == ALL_HORIZONS:
            found_all = [data for h in horizons.configured() if (data := latest_data(found, h)) is not None]
            if not found_all:
                raise NotFound(f"no prediction yet for {found.name}")
            return Response(found_all)
        data = latest_data(found, horizon)
        if data is None:
            raise NotFound(f"no prediction yet for {found.name} at horizon {horizon}")
        return Response(data)


@extend_schema(parameters=[MARKET_PARAM, HorizonQuerySerializer], responses=OpenApiTypes.OBJECT)
class MarketMetrics(APIView):
    """Rolling live metrics (rmse, mae, directional accuracy, interval coverage, the timing value of the
    direction calls) of served predictions, overall and per model, each next to persistence on the same windows:
    at the shortest horizon, or ?horizon= another; ?horizon=all: a list, one per horizon, shortest first."""

    def get(self, request, market: str) -> Response:
        choice = validated_query(HorizonQuerySerializer, request).get("horizon")
        found = market_or_404(market)
        if choice == ALL_HORIZONS:
            return Response([live_metrics(found, h) for h in horizons.configured()])
        return Response(live_metrics(found, choice))


@extend_schema(parameters=[ModelQuerySerializer])
class ModelList(generics.ListAPIView):
    """Trained models, newest first; ?market= narrows to one market."""

    serializer_class = ModelArtifactSerializer
    pagination_class = NewestFirstPagination

    def get_queryset(self):
        query = validated_query(ModelQuerySerializer, self.request)
        queryset = ModelArtifact.objects.select_related("market").defer("artifact")
        if "market" in query:
            try:
                queryset = queryset.filter(market=get_market(query["market"]))
            except MarketError as exc:
                raise ValidationError({"market": [str(exc)]}) from None
        return queryset


class ModelDetail(generics.RetrieveAPIView):
    """One model with its validation metrics and its live metrics."""

    serializer_class = ModelArtifactDetailSerializer
    queryset = ModelArtifact.objects.select_related("market").defer("artifact")
