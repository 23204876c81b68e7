"""Market names (EXCHANGE:BASE-QUOTE) and lookups shared by every app."""

from __future__ import annotations

import re

from core.columns import TooLong, check_length
from markets.models import Market

NAME_RE = re.compile(r"^(?P<exchange>[a-z][a-z0-9_]*):(?P<base>[A-Z0-9]+)-(?P<quote>[A-Z0-9]+)$", re.IGNORECASE)


class MarketError(ValueError):
    """A market name is ill-formed or names no known market; the message says which."""


def parse_market_name(name: str) -> tuple[str, str, str]:
    """'kraken:eth-usd' -> ('kraken', 'ETH', 'USD'); exchange lower case, assets upper case."""
    match = NAME_RE.match(name.strip()) if isinstance(name, str) else None
    if not match:
        raise MarketError(f"ill-formed market {name!r}: expected EXCHANGE:BASE-QUOTE, e.g. kraken:ETH-USD")
    parts = match["exchange"].lower(), match["base"].upper(), match["quote"].upper()
    try:
        for field, value in zip(("exchange", "base", "quote"), parts, strict=True):
            check_length(Market, field, value, f"its {field}")
    except TooLong as exc:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise MarketError(f"ill-formed market {shown!r}: {exc}") from None
    return parts


def exchange_symbol(exchange: str, base: str, quote: str) -> str:
    """The exchange's own streaming symbol: ETH/USD on Kraken WS v2, ETH-USD on Coinbase."""
    if exchange == "kraken":
        return f"{base}/{quote}"
    if exchange == "coinbase":
        return f"{base}-{quote}"
    return f"{base}{quote}"


def get_market(name: str) -> Market:
    exchange, base, quote = parse_market_name(name)
    try:
        return Market.objects.get(exchange=exchange, base=base, quote=quote)
    except Market.DoesNotExist:
        known = ", ".join(m.name for m in Market.objects.all()[:20]) or "none"
        raise MarketError(f"unknown market {name!r} (known: {known})") from None


def get_or_create_market(name: str) -> Market:
    exchange, base, quote = parse_market_name(name)
    market, _ = Market.objects.get_or_create(
        exchange=exchange, base=base, quote=quote, defaults={"symbol": exchange_symbol(exchange, base, quote)}
    )
    return market


def ensure_default_markets(names: list[str]) -> list[Market]:
    """Create the named markets, enabled, unless they exist (an admin's choice is never undone)."""
    created = []
    for name in names:
        exchange, base, quote = parse_market_name(name)
        market, new = Market.objects.get_or_create(
            exchange=exchange,
            base=base,
            quote=quote,
            defaults={"symbol": exchange_symbol(exchange, base, quote), "enabled": True},
        )
        if new:
            created.append(market)
    return created


def stream_key(market_name: str) -> str:
    """The lease key of the market's live stream (core.lease): one streaming process per market."""
    return f"cryptopred:stream:{market_name}"
