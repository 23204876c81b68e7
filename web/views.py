"""Trader pages: overview, one market, model history."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from core import horizons
from markets.models import Market
from markets.names import MarketError, get_market
from monitoring.models import DriftReport
from web import pages
from web.access import read_access


@read_access
def overview(request):
    return render(request, "web/overview.html", {"summaries": pages.overview(), "nav": "overview"})


def market_or_404(name: str) -> Market:
    try:
        return get_market(name)
    except MarketError as exc:
        raise Http404(str(exc)) from None


def range_context(market: Market) -> dict:
    """Each chart range with the candle interval drawn for it."""
    ranges = {}
    for key in pages.RANGES:
        seconds = pages.chart_interval(market, key)
        ranges[key] = {"interval": seconds, "label": pages.interval_label(seconds)}
    return ranges


@read_access
def market_detail(request, name: str):
    market = market_or_404(name)
    chart_range = request.GET.get("range", pages.DEFAULT_RANGE)
    if chart_range not in pages.RANGES:
        chart_range = pages.DEFAULT_RANGE
    ranges = range_context(market)
    summary = pages.summarize(market, horizon=pages.page_horizon(request.GET.get("horizon")))
    context = {
        "summary": summary,
        "horizons": pages.horizon_summaries(summary),
        "book": pages.latest_book(market),
        "recent": pages.recent_predictions(market),
        "ranges": ranges,
        "chart_range": chart_range,
        "chart": ranges[chart_range],
        "nav": "overview",
    }
    return render(request, "web/market.html", context)


@read_access
def market_model(request, name: str):
    """The "model in use" card alone: the market page reloads it when a prediction names another model."""
    market = market_or_404(name)
    summary = pages.summarize(market, horizon=pages.page_horizon(request.GET.get("horizon")))
    return render(request, "web/_model_card.html", {"model": summary.active_model, "notes": summary.notes})


@read_access
def market_accuracy(request, name: str):
    """The market page's live record alone: the direction calls' card and the accuracy per served forecaster
    (or ?line=1 the overview card's line)."""
    summary = pages.summarize(market_or_404(name), horizon=pages.page_horizon(request.GET.get("horizon")))
    template = "web/_accuracy_line.html" if request.GET.get("line") else "web/_live_record.html"
    return render(request, template, {"summary": summary})


@read_access
def market_horizons(request, name: str):
    """The horizons side by side alone: the market page reloads it when predictions are scored."""
    summary = pages.summarize(market_or_404(name))
    return render(request, "web/_horizons.html", {"horizons": pages.horizon_summaries(summary)})


@read_access
def models(request):
    history = pages.model_history()
    for market in history:
        # The latest check at each horizon (monitoring.drift).
        reports = [(h, DriftReport.objects.filter(market=market, horizon=h).first()) for h in horizons.configured()]
        market.drifts = [(h, report) for h, report in reports if report is not None]
        market.drift_unchecked = [h for h, report in reports if report is None]  # said once, not per horizon
    return render(request, "web/models.html", {"history": history, "nav": "models"})
