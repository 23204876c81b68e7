"""What every live source provides; the stream runner (markets.stream) does the rest."""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from markets.candles import Tick
from markets.models import Market


class MalformedFrame(ValueError):
    """A frame the source cannot use; logged and counted, the stream goes on."""


class HistoryError(Exception):
    """The history (REST) API answered with an error; retried like a network failure."""


class SubscriptionRejected(Exception):
    """The exchange refused the subscription; the message names the symbol."""


class Source(ABC):
    """A websocket trade feed of one market, plus an optional REST history for gaps."""

    def __init__(self, market: Market):
        self.market = market

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def subscribe_frames(self) -> list[dict]:
        """Frames to send right after connecting."""

    @abstractmethod
    def parse(self, message: dict) -> list[Tick] | bool | None:
        """Trades of a frame; True for the subscription ack; None for control frames.

        Raises MalformedFrame or SubscriptionRejected.
        """

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
