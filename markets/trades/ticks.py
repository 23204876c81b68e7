"""A trade as the database can hold it: the checks every source applies, files and live exchanges alike.

Rows and messages without a trade id get a stable one derived from the timestamp
and the rank among trades with the same timestamp (derived_id).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from markets.trades.candles import Tick

# What the database stores: prices and quantities are numeric(30,12) (a candle's VWAP, kept to 12 decimals in
# Python's 28 digits, needs a price below 1e16), trade ids bigint.
MIN_VALUE, MAX_PRICE, MAX_QTY = Decimal("1e-12"), Decimal("1e16"), Decimal("1e18")
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
WHOLE = re.compile(r"-?[0-9]{1,20}")  # longer is out of range anyway: never int() of a huge string


def derived_id(ts: datetime, rank: int) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000 + rank


def parse_ts(raw: str) -> datetime:
    ts = datetime.fromisoformat(raw)
    if ts.tzinfo is UTC:  # the common case ("...Z"), without a conversion
        return ts
    if ts.tzinfo is None:
        raise ValueError("no timezone (expected UTC, e.g. 2021-07-01T00:00:21.647000Z)")
    return ts.astimezone(UTC)


def check_price_qty(price: Decimal, qty: Decimal, raw_price: str, raw_qty: str) -> None:
    """ValueError unless price and qty fit the database; raw_price and raw_qty are the input's own spelling.

    Shared by trade files and live sources, so that both refuse the same values.
    """
    try:
        # Also the positivity check: infinities fall outside, NaN raises InvalidOperation.
        in_range = MIN_VALUE <= price < MAX_PRICE and MIN_VALUE <= qty < MAX_QTY
    except InvalidOperation:
        raise ValueError(f"bad price/qty {excerpt(raw_price)}/{excerpt(raw_qty)}: not decimal numbers") from None
    if not in_range:
        if not (price > 0 and qty > 0):
            raise ValueError(f"price and qty must be positive, got {excerpt(raw_price)}/{excerpt(raw_qty)}")
        raise ValueError(
            f"price/qty {excerpt(raw_price)}/{excerpt(raw_qty)} out of range: the database stores numeric(30,12);"
            " a price must be at least 1e-12 and below 1e16, a quantity at least 1e-12 and below 1e18"
        )


def check_trade_id(trade_id: int, what: str) -> None:
    """ValueError unless trade_id fits the database's bigint; what names it in the message."""
    if not MIN_ID <= trade_id <= MAX_ID:
        raise ValueError(f"{what} out of range: the database stores a 64-bit integer (bigint)")


def checked_tick(trade_id: object, ts: datetime, price: Decimal, qty: Decimal, side: str) -> Tick:
    """A live source's trade; ValueError where a trades file's row is refused: values the database cannot hold.

    trade_id as the exchange sent it: an integer or a string of digits (1.5, true or "1e3" is no id,
    where int() would quietly make one of it).
    """
    check_price_qty(price, qty, str(price), str(qty))
    if isinstance(raw := trade_id, str) and WHOLE.fullmatch(raw):
        trade_id = int(raw)
    if not isinstance(trade_id, int) or isinstance(trade_id, bool):
        raise ValueError(f"trade_id {excerpt(str(raw))} is not a whole number")
    check_trade_id(trade_id, f"trade_id {excerpt(str(trade_id))}")
    return Tick(trade_id, ts, price, qty, side)


def excerpt(raw: str, limit: int = 40) -> str:
    """repr() of a field for an error message, cut short: a hostile file can hold megabyte fields."""
    return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}… ({len(raw)} characters)"
