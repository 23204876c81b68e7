"""Trades CSV files (`ts,price,qty,side,trade_id`, plain or gzip): reading and writing.

Rows without a trade id get a stable one derived from the timestamp and the
row order (markets.trades.ticks.derived_id): epoch microseconds * 1000 + the row's rank among the rows with the
same timestamp. Replaying a file twice therefore stores nothing twice, and
sorting by id is exchange order (time, then file order).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO

from markets.trades.candles import Tick
from markets.trades.ticks import MAX_ID, MIN_ID, check_price_qty, check_trade_id, derived_id, excerpt, parse_ts

HEADER = ["ts", "price", "qty", "side", "trade_id"]
SIDES = {"buy", "sell"}
SAME_TS_LIMIT = 1000


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
