"""Exchange trade sources behind one interface (see base.Source)."""

from __future__ import annotations

from django.db.models import QuerySet

from markets.models import Market
from markets.streams.sources.base import Source


def live_sources() -> dict[str, type[Source]]:
    """Exchange name -> its live source class."""
    from markets.streams.sources.coinbase import CoinbaseSource
    from markets.streams.sources.kraken import KrakenSource

    return {"kraken": KrakenSource, "coinbase": CoinbaseSource}


def streamed_markets() -> QuerySet[Market]:
    """Enabled markets that should have a live stream: those of exchanges with a live source.

    Others (e.g. gemini:ETH-USD, fed by replay in the demo) are served from
    their stored trades and never get a stream task.
    """
    return Market.objects.filter(enabled=True, exchange__in=list(live_sources()))


def is_streamed(market: Market) -> bool:
    """Enabled on an exchange with a live source: a stream feeds it. Other markets are fed by replays."""
    return market.enabled and market.exchange in live_sources()


def source_for(market: Market) -> Source:
    """The live source of a market's exchange; a clear error for exchanges without one."""
    sources = live_sources()
    try:
        return sources[market.exchange](market)
    except KeyError:
        raise ValueError(f"no live source for exchange {market.exchange!r} (supported: {', '.join(sources)})") from None
