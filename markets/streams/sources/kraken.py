"""Kraken Spot: WebSocket v2 `trade`, `instrument` and `book` channels, and REST `GET /0/public/Trades` for history."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import httpx
from django.conf import settings

from markets.book.orderbook import OrderBook, kraken_checksum
from markets.streams.sources.base import (
    BookMessage,
    HistoryError,
    MalformedBook,
    MalformedFrame,
    Source,
    SubscriptionRejected,
    backoff_delay,
    book_level,
    book_time,
    load_frame,
)
from markets.trades.candles import Tick
from markets.trades.ticks import checked_tick, derived_id, parse_ts

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
RATE_LIMITED = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded")
REST_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}  # REST pair names still use Kraken's legacy asset codes
SIDES = {"b": "buy", "s": "sell", "buy": "buy", "sell": "sell"}
MICROSECOND = Decimal("0.000001")


class KrakenError(HistoryError):
    """Kraken REST answered with an error other than rate limiting."""


def rest_pair(market) -> str:
    return REST_ASSETS.get(market.base, market.base) + REST_ASSETS.get(market.quote, market.quote)


def ws_tick(item: dict) -> Tick:
    try:
        return checked_tick(
            trade_id=item["trade_id"],
            ts=parse_ts(item["timestamp"]),
            price=Decimal(str(item["price"])),
            qty=Decimal(str(item["qty"])),
            side=SIDES[item["side"]],
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        # Cut short: a hostile frame can hold megabyte fields.
        raise MalformedFrame(f"bad trade {str(item)[:200]}: {type(exc).__name__} {str(exc)[:200]}") from None


def rest_ticks(rows: list) -> list[Tick]:
    """REST rows [price, volume, time, side, ordertype, misc(, trade_id)] as ticks.

    Times are seconds with sub-microsecond digits, truncated to microseconds.
    Old 6-field rows without an id get the same derived id as a trades file.
    """
    ticks: list[Tick] = []
    previous: tuple[datetime, int] | None = None
    for row in rows:
        try:
            seconds = Decimal(str(row[2]))
            micros = int(seconds.quantize(MICROSECOND, rounding=ROUND_DOWN) * 1_000_000)
            ts = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
            rank = previous[1] + 1 if previous and previous[0] == ts else 0
            trade_id = row[6] if len(row) > 6 else derived_id(ts, rank)
            ticks.append(checked_tick(trade_id, ts, Decimal(row[0]), Decimal(row[1]), SIDES[row[3]]))
        except (IndexError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise KrakenError(f"malformed trade row {row!r}: {type(exc).__name__} {exc}") from None
        previous = (ts, rank)
    return ticks


class KrakenRest:
    """Paged `Trades` history with rate-limit backoff."""

    def __init__(self, pair: str, client: httpx.Client | None = None, backoff_max_s: float | None = None):
        self.pair = pair
        self.client = client or httpx.Client(base_url=settings.KRAKEN_REST_URL, timeout=15.0)
        self.backoff_max_s = settings.STREAM_BACKOFF_MAX_S if backoff_max_s is None else backoff_max_s

    def page(self, since_ns: int) -> tuple[list[Tick], int]:
        """One page from since_ns (nanoseconds); returns its ticks and the `last` cursor."""
        attempt = 0
        while True:
            response = self.client.get("/0/public/Trades", params={"pair": self.pair, "since": since_ns})
            try:
                body = load_frame(response.text) if response.content else {}
            except MalformedFrame as exc:
                raise KrakenError(f"Kraken Trades {self.pair}: HTTP {response.status_code}, {exc}") from None
            errors = body.get("error") or ([] if response.is_success else [f"HTTP {response.status_code}"])
            if any(e.startswith(RATE_LIMITED) for e in errors) or response.status_code == 429:
                attempt += 1
                delay = backoff_delay(attempt, settings.STREAM_BACKOFF_BASE_S, self.backoff_max_s)
                log.info("kraken %s: rate limited, retrying in %.1fs", self.pair, delay)
                time.sleep(delay)
                continue
            if errors:
                raise KrakenError(f"Kraken Trades {self.pair}: {', '.join(map(str, errors))}")
            result = body.get("result") or {}
            rows = next((v for k, v in result.items() if k != "last"), None)
            if rows is None or "last" not in result:
                raise KrakenError(f"Kraken Trades {self.pair}: unexpected response {response.text[:200]!r}")
            return rest_ticks(rows), int(result["last"])

    def pages(self, since_ns: int) -> Iterator[tuple[list[Tick], int]]:
        """Pages until caught up (a short page or a cursor that stops moving)."""
        cursor = since_ns
        while True:
            ticks, last = self.page(cursor)
            if ticks:
                yield ticks, last
            if len(ticks) < PAGE_SIZE or last <= cursor:
                return
            cursor = last


def book_message(kind: str, entry: dict) -> BookMessage:
    """One `data` entry of a v2 book frame; MalformedBook names the frame and the problem.

    As documented, `timestamp` comes with updates only (a snapshot may have
    none: ts None) and prices and quantities are JSON numbers (strings are
    taken too). A checksum, when present, must be an unsigned 32-bit integer.
    """
    raw_ts = entry.get("timestamp")
    frame = f"book {kind} of {entry.get('symbol')}" + (f" at {raw_ts}" if raw_ts is not None else "")
    ts = book_time(raw_ts, frame)
    checksum = entry.get("checksum")
    valid = isinstance(checksum, int) and not isinstance(checksum, bool) and 0 <= checksum < 2**32
    if checksum is not None and not valid:
        raise MalformedBook(f"{frame}: bad checksum {checksum!r}")
    sides = []
    for name in ("bids", "asks"):
        levels = entry.get(name, [])
        if not isinstance(levels, list):
            raise MalformedBook(f"{frame}: {name} is not a list")
        try:
            sides.append([book_level(level["price"], level["qty"], frame) for level in levels])
        except (KeyError, TypeError):
            raise MalformedBook(f"{frame}: bad level in {name}: {str(levels)[:200]}") from None
    return BookMessage(kind == "snapshot", sides[0], sides[1], ts, checksum, frame)


class KrakenSource(Source):
    """WebSocket v2: status, subscribe ack/error, trade snapshot and updates, heartbeat, pong; the order book.

    Per connection: `trade` and `instrument` are subscribed at once; the
    instrument snapshot gives the pair's price and qty precision, which the
    book checksum needs (never assumed per pair), and only then is `book`
    subscribed (depth BOOK_DEPTH, with a snapshot). A later instrument update
    for the pair changes the precision used from then on.
    """

    def __init__(self, market):
        super().__init__(market)
        self.req_id = 0
        self.channels: dict[int, str] = {}  # req_id -> channel of this connection's requests
        self.precision: tuple[int, int] | None = None  # (price, qty) decimals from the instrument channel
        self.book_subscribed = False

    @property
    def url(self) -> str:
        return settings.KRAKEN_WS_URL

    @property
    def book_depth(self) -> int:
        return settings.BOOK_DEPTH

    def _request(self, method: str, channel: str, **params) -> dict:
        self.req_id += 1
        self.channels[self.req_id] = channel
        return {"method": method, "params": {"channel": channel, **params}, "req_id": self.req_id}

    def _book(self, method: str) -> dict:
        params = {"symbol": [self.market.symbol], "depth": self.book_depth}
        return self._request(method, "book", **params, **({"snapshot": True} if method == "subscribe" else {}))

    def subscribe_frames(self) -> list[dict]:
        self.channels.clear()
        self.outbox.clear()
        self.precision, self.book_subscribed = None, False
        return [
            self._request("subscribe", "trade", symbol=[self.market.symbol], snapshot=True),
            self._request("subscribe", "instrument", snapshot=True),
        ]

    def book_resync_frames(self) -> list[dict]:
        if self.precision is None:  # the book waits for the precision: ask for the instrument data again
            log.warning("kraken %s: no instrument data for the pair yet; requesting it again", self.market.symbol)
            return [self._request("unsubscribe", "instrument"), self._request("subscribe", "instrument", snapshot=True)]
        frames = [self._book("unsubscribe")] if self.book_subscribed else []
        self.book_subscribed = True
        return [*frames, self._book("subscribe")]

    def book_checksum(self, book: OrderBook) -> int:
        return kraken_checksum(book, *self.precision)

    def ping_frame(self) -> dict:
        self.req_id += 1
        return {"method": "ping", "req_id": self.req_id}

    def parse(self, message: dict) -> list[Tick] | BookMessage | bool | None:
        channel, method = message.get("channel"), message.get("method")
        if channel == "trade":
            data = message.get("data")
            if message.get("type") not in {"snapshot", "update"} or not isinstance(data, list):
                raise MalformedFrame(f"unexpected trade frame {str(message)[:200]}")
            return [ws_tick(item) for item in data if item.get("symbol") == self.market.symbol]
        if channel == "book":
            return self._parse_book(message)
        if method in {"subscribe", "unsubscribe"}:
            return self._parse_ack(method, message)
        if channel == "instrument":
            self._parse_instrument(message)
            return None
        if channel in {"heartbeat", "status"} or method == "pong":
            if channel == "status":
                log.info("kraken status: %s", message.get("data"))
            return None
        if "error" in message:
            raise MalformedFrame(f"error frame: {message.get('error')}")
        raise MalformedFrame(f"unexpected frame {str(message)[:200]}")

    def _parse_book(self, message: dict) -> BookMessage | None:
        kind, data = message.get("type"), message.get("data")
        if kind not in {"snapshot", "update"} or not isinstance(data, list):
            raise MalformedBook(f"unexpected book frame {str(message)[:200]}")
        entries = [entry for entry in data if isinstance(entry, dict) and entry.get("symbol") == self.market.symbol]
        if not entries:
            return None
        if len(entries) > 1:
            raise MalformedBook(f"book {kind} with {len(entries)} entries for {self.market.symbol}")
        return book_message(kind, entries[0])

    def _parse_ack(self, method: str, message: dict) -> bool | None:
        """True for the trade subscription; a rejected book or instrument request leaves trades alone."""
        result = message.get("result") if isinstance(message.get("result"), dict) else {}
        channel = result.get("channel") or self.channels.get(message.get("req_id"), "trade")
        if message.get("success"):
            return True if method == "subscribe" and channel == "trade" else None
        symbol = message.get("symbol") or self.market.symbol
        error = f"Kraken rejected the {channel} {method} for {symbol}: {message.get('error')}"
        if method == "unsubscribe":
            log.info("%s", error)
            return None
        if channel in {"book", "instrument"}:  # trades go on; the book is requested again (with backoff)
            self.book_lost = error
            return None
        raise SubscriptionRejected(error)

    def _parse_instrument(self, message: dict) -> None:
        """The pair's precision from an instrument snapshot or update; subscribes the book the first time."""
        data = message.get("data")
        pairs = data.get("pairs") if isinstance(data, dict) else None
        if message.get("type") not in {"snapshot", "update"} or not isinstance(pairs, list):
            raise MalformedFrame(f"unexpected instrument frame {str(message)[:200]}")
        for pair in pairs:
            if not isinstance(pair, dict) or pair.get("symbol") != self.market.symbol:
                continue
            precision = pair.get("price_precision"), pair.get("qty_precision")
            if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 18 for p in precision):
                raise MalformedFrame(f"instrument {self.market.symbol}: bad precision {precision!r}")
            if precision != self.precision:
                log.info("kraken %s: price precision %d, qty precision %d", self.market.symbol, *precision)
            self.precision = precision
        if self.precision is None and message.get("type") == "snapshot":
            log.warning("kraken %s: not in the instrument snapshot; no order book", self.market.symbol)
        elif self.precision is not None and not self.book_subscribed:
            self.book_subscribed = True
            self.outbox.append(self._book("subscribe"))

    def history(self, since_ns: int) -> Iterator[tuple[list[Tick], int]]:
        return KrakenRest(rest_pair(self.market)).pages(since_ns)
