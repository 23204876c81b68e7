"""Trades CSV files (`ts,price,qty,side,trade_id`, plain or gzip): reading and writing.

Rows without a trade id get a stable one derived from the timestamp and the
row order: epoch microseconds * 1000 + the row's rank among the rows with the
same timestamp. Replaying a file twice therefore stores nothing twice, and
sorting by id is exchange order (time, then file order).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from markets.candles import Tick

HEADER = ["ts", "price", "qty", "side", "trade_id"]
SIDES = {"buy", "sell"}
SAME_TS_LIMIT = 1000
# What the database stores: prices and quantities are numeric(30,12) (a candle's VWAP, kept to 12 decimals in
# Python's 28 digits, needs a price below 1e16), trade ids bigint.
MIN_VALUE, MAX_PRICE, MAX_QTY = Decimal("1e-12"), Decimal("1e16"), Decimal("1e18")
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
WHOLE = re.compile(r"-?[0-9]{1,20}")  # longer is out of range anyway: never int() of a huge string


class TradeFileError(ValueError):
    """A file or row is malformed; the message names the file and line."""


def open_text(path: Path) -> tuple[io.TextIOWrapper, BinaryIO]:
    """Text stream of a plain or gzip file (detected by its magic bytes), and the raw file for progress."""
    raw = open(path, "rb")  # closed by the caller, with the text stream
    magic = raw.read(2)
    raw.seek(0)
    binary = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
    # utf-8-sig: a byte order mark (as spreadsheet programs write one) is skipped, not read as part of the header.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline=""), raw


def file_problem(path: Path) -> str | None:
    """Why path cannot be read as a file ("no such file", "is a directory", ...), or None."""
    if path.is_dir():
        return "is a directory"
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a regular file"
    return None


def derived_id(ts: datetime, rank: int) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000 + rank


def parse_ts(raw: str) -> datetime:
    ts = datetime.fromisoformat(raw)
    if ts.tzinfo is UTC:  # the common case ("...Z"), without a conversion
        return ts
    if ts.tzinfo is None:
        raise ValueError("no timezone (expected UTC, e.g. 2021-07-01T00:00:21.647000Z)")
    return ts.astimezone(UTC)


def parse_row(row: list[str], previous: tuple[datetime, int] | None) -> tuple[Tick, int]:
    """One CSV row as a Tick; previous is (ts, rank) of the row before, for derived ids."""
    try:
        raw_ts, raw_price, raw_qty, side, raw_id = row
    except ValueError:
        raise ValueError(f"expected 5 fields (ts,price,qty,side,trade_id), got {len(row)}") from None
    try:
        ts = parse_ts(raw_ts)
    except ValueError as exc:
        raise ValueError(f"bad ts {excerpt(raw_ts)}: {exc}") from None
    try:
        price, qty = Decimal(raw_price), Decimal(raw_qty)
    except InvalidOperation:
        raise ValueError(f"bad price/qty {excerpt(raw_price)}/{excerpt(raw_qty)}: not decimal numbers") from None
    check_price_qty(price, qty, raw_price, raw_qty)
    if side not in SIDES:
        raise ValueError(f"bad side {excerpt(side)}: expected buy or sell (taker side)")
    rank = previous[1] + 1 if previous is not None and previous[0] == ts else 0
    if raw_id:
        try:
            trade_id = int(raw_id)
        except ValueError:
            raise ValueError(f"bad trade_id {excerpt(raw_id)}: expected an integer or empty") from None
    else:
        if rank >= SAME_TS_LIMIT:
            raise ValueError(f"more than {SAME_TS_LIMIT} rows share ts {raw_ts} and have no trade_id")
        trade_id = derived_id(ts, rank)
    if not MIN_ID <= trade_id <= MAX_ID:  # the message only then: this runs for every row of a file
        check_trade_id(trade_id, f"trade_id {excerpt(raw_id)}" if raw_id else f"the trade_id derived from ts {raw_ts}")
    return Tick(trade_id, ts, price, qty, side), rank


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


def read_csv(
    path: Path,
    header: list[str],
    error: type[ValueError],
    progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a CSV file (plain or gzip) that starts with header.

    A missing file, a wrong header or undecodable content raises error naming
    the file and line. progress, if given, gets the bytes read so far every
    progress_every rows and at the end.
    """
    try:
        stream, raw = open_text(path)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    with stream, raw:
        reader = csv.reader(stream)
        try:
            got = next(reader, None)
            if got is None:
                raise error(f"{path}: empty file (expected the header {','.join(header)})")
            if got != header:
                raise error(f"{path}:1: expected header {','.join(header)}, got {got and excerpt(','.join(got))}")
            for count, row in enumerate(reader, 1):
                yield reader.line_num, row
                if progress and count % progress_every == 0:
                    progress(raw.tell())
            if progress:
                progress(raw.tell())
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise error(f"{path}:{reader.line_num}: unreadable: {exc}") from None


def read_trades(
    path: Path, batch_size: int = 10_000, progress: Callable[[int], None] | None = None
) -> Iterator[list[Tick]]:
    """Batches of ticks in file order; TradeFileError names file and line of a bad row.

    progress, if given, is called with the bytes of the file read so far after each batch.
    """
    for ticks, _ in read_trade_rows(path, batch_size, progress):
        yield ticks


def read_trade_rows(
    path: Path, batch_size: int = 10_000, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[list[Tick], list[list[str]]]]:
    """read_trades() with each batch's CSV rows, row for tick: the file's own strings."""
    ticks: list[Tick] = []
    rows: list[list[str]] = []
    previous = None
    for line, row in read_csv(path, HEADER, TradeFileError, progress, progress_every=batch_size):
        try:
            tick, rank = parse_row(row, previous)
        except ValueError as exc:
            raise TradeFileError(f"{path}:{line}: {exc}") from None
        previous = (tick.ts, rank)
        ticks.append(tick)
        rows.append(row)
        if len(ticks) >= batch_size:
            yield ticks, rows
            ticks, rows = [], []
    if ticks:
        yield ticks, rows


def line_of(path: Path, matches: Callable[[Tick], bool]) -> int | None:
    """Line of the first row of path whose trade matches (fed every row in order): for error messages only."""
    previous = None
    for line, row in read_csv(path, HEADER, TradeFileError):
        try:
            found, rank = parse_row(row, previous)
        except ValueError:
            return None
        if matches(found):
            return line
        previous = (found.ts, rank)
    return None


def format_ts(ts: datetime, micro: bool = False) -> str:
    """ISO-8601 UTC ending in Z (2021-07-01T00:00:20Z, or with .ffffff when micro)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def format_decimal(value: Decimal) -> str:
    """Exact, without exponent or trailing zeros: 2278.150000000000 -> 2278.15."""
    return f"{value.normalize():f}"
