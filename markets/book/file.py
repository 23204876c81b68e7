"""Order-book CSV files (plain or gzip), told apart from trades files by their header.

- top of book `ts,bid_price,bid_qty,ask_price,ask_qty`: each row is the whole
  (one-level) book at ts;
- L2 long format `ts,side,level,price,qty`: consecutive rows with the same ts
  are one snapshot, `side` bid/ask, `level` 1 = best, bids strictly descending
  and asks strictly ascending.

Files are streamed (one snapshot in memory at a time). A malformed row raises
BookFileError `FILE:LINE: problem`; timestamps must not go backwards.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from markets.trades.file import HEADER as TRADES_HEADER
from markets.trades.file import open_text, read_csv
from markets.trades.ticks import excerpt, parse_ts

TOP_HEADER = ["ts", "bid_price", "bid_qty", "ask_price", "ask_qty"]
L2_HEADER = ["ts", "side", "level", "price", "qty"]
KINDS = {"trades": TRADES_HEADER, "top": TOP_HEADER, "l2": L2_HEADER}
MAX_LEVELS = 1000  # per side of one L2 snapshot: keeps a malformed file from growing one without end


class BookFileError(ValueError):
    """A file or row is malformed; the message names the file and line."""


@dataclass(slots=True)
class BookSnapshot:
    """The whole book at ts, best levels first; line is the file line of its first row."""

    line: int
    ts: datetime
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


def file_kind(path: Path) -> str:
    """ "trades", "top" or "l2", from the file's header line."""
    try:
        stream, raw = open_text(path)
    except OSError as exc:
        raise BookFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with stream, raw:
        try:
            header = next(csv.reader(stream), None)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise BookFileError(f"{path}:1: unreadable: {exc}") from None
    known = "; ".join(",".join(h) for h in KINDS.values())
    if header is None:
        raise BookFileError(f"{path}: empty file (expected a header: {known})")
    for kind, expected in KINDS.items():
        if header == expected:
            return kind
    got = excerpt(",".join(header)) if header else "an empty line"
    raise BookFileError(f"{path}:1: unknown header {got} (expected one of: {known})")


def read_book(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[BookSnapshot]:
    """Snapshots of a top-of-book or L2 file, in file order; progress gets the bytes read so far."""
    kind = file_kind(path)
    if kind == "top":
        return read_top(path, progress)
    if kind == "l2":
        return read_l2(path, progress)
    raise BookFileError(f"{path}:1: a trades file ({','.join(TRADES_HEADER)}), not an order book")


def _decimal(raw: str, name: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"bad {name} {raw!r}: not a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def _ts(raw: str) -> datetime:
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise ValueError(f"bad ts {raw!r}: {exc}") from None


def read_top(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[BookSnapshot]:
    """One one-level snapshot per row of a top-of-book file."""
    previous = None
    for line, row in read_csv(path, TOP_HEADER, BookFileError, progress):
        try:
            if len(row) != 5:
                raise ValueError(f"expected 5 fields ({','.join(TOP_HEADER)}), got {len(row)}")
            ts = _ts(row[0])
            if previous is not None and ts < previous:
                raise ValueError(f"ts {row[0]} is before the previous row's {previous.isoformat()}")
            bid, bid_qty = _decimal(row[1], "bid_price"), _decimal(row[2], "bid_qty")
            ask, ask_qty = _decimal(row[3], "ask_price"), _decimal(row[4], "ask_qty")
            if bid >= ask:
                raise ValueError(f"crossed book: bid {row[1]} >= ask {row[3]}")
        except ValueError as exc:
            raise BookFileError(f"{path}:{line}: {exc}") from None
        previous = ts
        yield BookSnapshot(line, ts, [(bid, bid_qty)], [(ask, ask_qty)])


def read_l2(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[BookSnapshot]:
    """One snapshot per run of rows sharing a ts in an L2 long-format file."""
    snap: BookSnapshot | None = None
    raw_ts = None  # the ts string of the snapshot being read
    for line, row in read_csv(path, L2_HEADER, BookFileError, progress):
        try:
            if len(row) != 5:
                raise ValueError(f"expected 5 fields ({','.join(L2_HEADER)}), got {len(row)}")
            if row[0] != raw_ts:
                ts = _ts(row[0])
                if snap is None or ts != snap.ts:
                    if snap is not None:
                        if ts < snap.ts:
                            raise ValueError(f"ts {row[0]} is before the previous snapshot's {raw_ts}")
                        _check_complete(path, snap)
                        yield snap
                    snap = BookSnapshot(line, ts, [], [])
                raw_ts = row[0]
            _add_level(snap, row)
        except BookFileError:
            raise
        except ValueError as exc:
            raise BookFileError(f"{path}:{line}: {exc}") from None
    if snap is not None:
        _check_complete(path, snap)
        yield snap


def _add_level(snap: BookSnapshot, row: list[str]) -> None:
    side, raw_level = row[1], row[2]
    if side == "bid":
        levels, other = snap.bids, snap.asks
    elif side == "ask":
        levels, other = snap.asks, snap.bids
    else:
        raise ValueError(f"bad side {side!r}: expected bid or ask")
    try:
        level = int(raw_level)
    except ValueError:
        raise ValueError(f"bad level {raw_level!r}: expected an integer from 1") from None
    if level != len(levels) + 1:
        raise ValueError(
            f"{side} level {level} out of order: expected {len(levels) + 1}"
            " (levels run 1, 2, 3, ... within a snapshot, and snapshots have distinct ts)"
        )
    if level > MAX_LEVELS:
        raise ValueError(f"more than {MAX_LEVELS} {side} levels in one snapshot")
    price, qty = _decimal(row[3], "price"), _decimal(row[4], "qty")
    if levels:
        better = levels[-1][0]
        if (price >= better) if side == "bid" else (price <= better):
            order = "below" if side == "bid" else "above"
            raise ValueError(f"{side} level {level} price {row[3]} is not {order} level {level - 1}'s {better}")
    elif other:
        bid, ask = (price, other[0][0]) if side == "bid" else (other[0][0], price)
        if bid >= ask:
            raise ValueError(f"crossed snapshot: best bid {bid} >= best ask {ask}")
    levels.append((price, qty))


def _check_complete(path: Path, snap: BookSnapshot) -> None:
    if not snap.bids or not snap.asks:
        missing = "bids" if not snap.bids else "asks"
        raise BookFileError(f"{path}:{snap.line}: snapshot at {snap.ts.isoformat()} has no {missing}")
