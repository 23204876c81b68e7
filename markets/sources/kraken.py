"""Kraken Spot: WebSocket v2 `trade` channel, and REST `GET /0/public/Trades` for history."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import httpx
from django.conf import settings

from markets.candles import Tick
from markets.sources.base import HistoryError, MalformedFrame, Source, SubscriptionRejected, backoff_delay, load_frame
from markets.tradefile import derived_id, parse_ts

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
        return Tick(
            trade_id=int(item["trade_id"]),
            ts=parse_ts(item["timestamp"]),
            price=Decimal(str(item["price"])),
            qty=Decimal(str(item["qty"])),
            side=SIDES[item["side"]],
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedFrame(f"bad trade {item!r}: {type(exc).__name__} {exc}") from None


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
            trade_id = int(row[6]) if len(row) > 6 else derived_id(ts, rank)
            ticks.append(Tick(trade_id, ts, Decimal(row[0]), Decimal(row[1]), SIDES[row[3]]))
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


class KrakenSource(Source):
    """WebSocket v2: status, subscribe ack/error, trade snapshot and updates, heartbeat, pong."""

    def __init__(self, market):
        super().__init__(market)
        self.req_id = 0

    @property
    def url(self) -> str:
        return settings.KRAKEN_WS_URL

    def subscribe_frames(self) -> list[dict]:
        self.req_id += 1
        params = {"channel": "trade", "symbol": [self.market.symbol], "snapshot": True}
        return [{"method": "subscribe", "params": params, "req_id": self.req_id}]

    def ping_frame(self) -> dict:
        self.req_id += 1
        return {"method": "ping", "req_id": self.req_id}

    def parse(self, message: dict) -> list[Tick] | bool | None:
        channel, method = message.get("channel"), message.get("method")
        if channel == "trade":
            data = message.get("data")
            if message.get("type") not in {"snapshot", "update"} or not isinstance(data, list):
                raise MalformedFrame(f"unexpected trade frame {str(message)[:200]}")
            return [ws_tick(item) for item in data if item.get("symbol") == self.market.symbol]
        if method == "subscribe":
            if message.get("success"):
                return True
            symbol = message.get("symbol") or self.market.symbol
            raise SubscriptionRejected(f"Kraken rejected the trade subscription for {symbol}: {message.get('error')}")
        if channel in {"heartbeat", "status"} or method in {"pong", "unsubscribe"}:
            if channel == "status":
                log.info("kraken status: %s", message.get("data"))
            return None
        if "error" in message:
            raise MalformedFrame(f"error frame: {message.get('error')}")
        raise MalformedFrame(f"unexpected frame {str(message)[:200]}")

    def history(self, since_ns: int) -> Iterator[tuple[list[Tick], int]]:
        return KrakenRest(rest_pair(self.market)).pages(since_ns)
