"""Exchange trade sources behind one interface (see base.Source)."""

from __future__ import annotations

from markets.models import Market
from markets.sources.base import Source


def source_for(market: Market) -> Source:
    """The live source of a market's exchange; a clear error for exchanges without one."""
    from markets.sources.coinbase import CoinbaseSource
    from markets.sources.kraken import KrakenSource

    sources = {"kraken": KrakenSource, "coinbase": CoinbaseSource}
    try:
        return sources[market.exchange](market)
    except KeyError:
        raise ValueError(f"no live source for exchange {market.exchange!r} (supported: {', '.join(sources)})") from None
