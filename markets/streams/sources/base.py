"""What every live source provides; the stream runner (markets.streams.runner) does the rest."""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from markets.book.orderbook import OrderBook
from markets.models import Market
from markets.trades.candles import Tick
from markets.trades.ticks import parse_ts


class MalformedFrame(ValueError):
    """A frame the source cannot use; logged and counted, the stream goes on."""


class MalformedBook(MalformedFrame):
    """A book frame that cannot be applied: the book misses its levels, so it is fetched again."""


class HistoryError(Exception):
    """The history (REST) API answered with an error; retried like a network failure."""


class SubscriptionRejected(Exception):
    """The exchange refused the subscription; the message names the symbol."""


Level = tuple[Decimal, Decimal]  # (price, qty)


@dataclass(frozen=True, slots=True)
class Unused:
    """What parse() returns for a well-formed frame of a channel the source does not consume: counted apart
    from malformed frames (it says nothing is wrong with the feed)."""

    channel: str


@dataclass(slots=True)
class BookMessage:
    """One order-book message of the source's market, in the exchange's order.

    A snapshot replaces the book; an update sets its levels (qty is the new
    absolute size, 0 deletes the level). checksum is the exchange's checksum of
    the book after this message, when it sends one (see Source.book_checksum):
    a message without one is verified by the next one that has one.
    """

    snapshot: bool
    bids: list[Level]
    asks: list[Level]
    ts: datetime | None  # the exchange's time of the book state; None when it sent none (the receive time is used)
    checksum: int | None = None
    frame: str = ""  # names the frame in logs, e.g. "book update of BTC/USD at 2026-…Z"


def book_time(raw, frame: str) -> datetime | None:
    """A book frame's timestamp; None when it sent none (the receive time is used), else MalformedBook."""
    if raw is None:
        return None
    try:
        return parse_ts(raw)
    except (TypeError, ValueError) as exc:
        raise MalformedBook(f"{frame}: bad timestamp ({type(exc).__name__} {exc})") from None


def book_level(price, qty, frame: str) -> Level:
    """A (price, qty) of a book frame as exact decimals: price > 0, qty >= 0; else MalformedBook naming the frame."""
    try:
        if isinstance(price, bool) or isinstance(qty, bool):
            raise TypeError("a boolean")
        level = Decimal(price), Decimal(qty)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise MalformedBook(f"{frame}: bad level price {price!r} qty {qty!r} ({type(exc).__name__})") from None
    if not (level[0].is_finite() and level[1].is_finite()):
        raise MalformedBook(f"{frame}: bad level price {price!r} qty {qty!r} (not finite)")
    if level[0] <= 0:
        raise MalformedBook(f"{frame}: price {price!r} is not positive")
    if level[1] < 0:
        raise MalformedBook(f"{frame}: negative qty {qty!r} at price {price!r}")
    return level


class Source(ABC):
    """A websocket trade feed of one market, plus an optional REST history for gaps and an optional order book.

    A source with a book channel sets book_depth (levels per side the client
    keeps) and returns BookMessage from parse(). Two attributes carry what a
    frame asks of the runner besides its content: outbox (frames to send now,
    e.g. the book subscription once the pair's precision is known) and
    book_lost (why the book lost continuity, e.g. a sequence gap: the runner
    stops using it and fetches it again).
    """

    book_depth = 0  # levels per side of the source's book kept by the client; 0: no book channel

    def __init__(self, market: Market):
        self.market = market
        self.outbox: list[dict] = []
        self.book_lost: str | None = None

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def subscribe_frames(self) -> list[dict]:
        """Frames to send right after connecting (a new connection: per-connection state starts afresh)."""

    @abstractmethod
    def parse(self, message: dict) -> list[Tick] | BookMessage | Unused | bool | None:
        """Trades of a frame, or its book message; True for the trade subscription ack; None for control frames;
        Unused for a documented channel the source does not consume.

        Raises MalformedFrame (MalformedBook for a book frame) or SubscriptionRejected.
        """

    def book_resync_frames(self) -> list[dict]:
        """Frames that drop the book subscription and request it again with a snapshot."""
        return []

    def book_checksum(self, book: OrderBook) -> int:
        """The exchange's checksum of book, for sources whose BookMessage carries one."""
        raise NotImplementedError(f"{type(self).__name__} sends no book checksum")

    def ping_frame(self) -> dict | None:
        """Application-level keepalive, when the protocol has one."""
        return None

    def history(self, since_ns: int) -> Iterator[tuple[list[Tick], int]] | None:
        """Pages of (trades, resume cursor in ns) from since_ns to now; None without a history API."""
        return None


def load_frame(raw: str | bytes) -> dict:
    """JSON with numbers kept as exact decimals."""
    try:
        message = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise MalformedFrame(f"expected a JSON object, got {type(message).__name__}")
    return message


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff, jittered within its upper half so clients do not retry in step."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * random.uniform(0.5, 1.0)


def to_ns(ts: datetime) -> int:
    """Epoch nanoseconds of a (microsecond) datetime, exactly."""
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
