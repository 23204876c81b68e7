"""Trader pages: overview, one market, model history."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from markets.models import Market
from markets.services import MarketError, get_market
from web import services
from web.access import read_access


@read_access
def overview(request):
    return render(request, "web/overview.html", {"summaries": services.overview(), "nav": "overview"})


def market_or_404(name: str) -> Market:
    try:
        return get_market(name)
    except MarketError as exc:
        raise Http404(str(exc)) from None


@read_access
def market_detail(request, name: str):
    market = market_or_404(name)
    chart_range = request.GET.get("range", services.DEFAULT_RANGE)
    if chart_range not in services.RANGES:
        chart_range = services.DEFAULT_RANGE
    context = {
        "summary": services.summarize(market),
        "recent": services.recent_predictions(market),
        "ranges": services.RANGES,
        "chart_range": chart_range,
        "nav": "overview",
    }
    return render(request, "web/market.html", context)


@read_access
def market_model(request, name: str):
    """The "model in use" card alone: the market page reloads it when a prediction names another model."""
    model = services.active_model(market_or_404(name))
    return render(request, "web/_model_card.html", {"model": model})


@read_access
def models(request):
    return render(request, "web/models.html", {"history": services.model_history(), "nav": "models"})
