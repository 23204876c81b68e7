"""Option parsing shared by the markets management commands: one-line CommandErrors."""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import CommandError

from core.durations import parse_duration
from markets.models import Market
from markets.names import MarketError, get_market, get_or_create_market


def market_option(name: str, create: bool = False) -> Market:
    """The market named by --market; create=True makes a missing (well-formed) one."""
    try:
        return get_or_create_market(name) if create else get_market(name)
    except MarketError as exc:
        raise CommandError(f"--market: {exc}") from None


def time_option(raw: str | None, option: str) -> datetime | None:
    """ISO-8601; a time without zone is UTC."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"{option}: expected an ISO-8601 time such as 2021-07-01T00:00:00Z, got {raw!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def interval_option(raw: str, market: Market) -> int:
    """'10s', '1m' -> seconds; a multiple of the market's candle interval."""
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise CommandError(f"--interval: {exc}") from None
    if seconds % market.interval_s:
        raise CommandError(
            f"--interval: expected a multiple of {market.name}'s {market.interval_s}s candles (e.g. 10s, 1m),"
            f" got {raw!r}"
        )
    return seconds


def add_range_arguments(parser) -> None:
    """--market, --interval, --start, --end of the export commands."""
    parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
    parser.add_argument("--interval", default="10s", help="a multiple of the market's interval (default 10s)")
    parser.add_argument("--start", help="ISO-8601 UTC, first window start (inclusive)")
    parser.add_argument("--end", help="ISO-8601 UTC, end (exclusive)")


def range_options(options: dict) -> tuple[Market, int, datetime | None, datetime | None]:
    """(market, interval_s, start, end) from the options add_range_arguments added."""
    market = market_option(options["market"])
    interval_s = interval_option(options["interval"], market)
    start, end = time_option(options["start"], "--start"), time_option(options["end"], "--end")
    if start is not None and end is not None and end <= start:
        raise CommandError(f"--end: expected a time after --start {options['start']}, got {options['end']!r}")
    return market, interval_s, start, end
