"""Coinbase Advanced Trade WebSocket: `market_trades`, `level2` and `heartbeats` (no public gap-fill history)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings

from markets.streams.sources.base import (
    BookMessage,
    MalformedBook,
    MalformedFrame,
    Source,
    SubscriptionRejected,
    Unused,
    book_level,
    book_time,
)
from markets.trades.candles import Tick
from markets.trades.ticks import checked_tick, parse_ts

log = logging.getLogger(__name__)

# Coinbase reports the maker's side; trades here carry the taker's.
TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}
BOOK_SIDES = {"bid": 0, "offer": 1}
# level2 carries the whole book (no depth to choose); the client keeps at most this many levels per side.
BOOK_LEVELS = 50_000
# The documented channels this source does not subscribe to: a frame of one is well-formed, only of no use here.
UNUSED_CHANNELS = frozenset({"candles", "status", "ticker", "ticker_batch", "user", "futures_balance_summary"})


def coinbase_tick(item: dict) -> Tick:
    try:
        return checked_tick(
            trade_id=item["trade_id"],
            ts=parse_ts(item["time"]),
            price=Decimal(item["price"]),
            qty=Decimal(item["size"]),
            side=TAKER_SIDE[item["side"]],
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        # Cut short: a hostile frame can hold megabyte fields.
        raise MalformedFrame(f"bad trade {str(item)[:200]}: {type(exc).__name__} {str(exc)[:200]}") from None


def book_message(event: dict, timestamp) -> BookMessage:
    """One l2_data event (snapshot or update); new_quantity is the level's new size, "0" removes it."""
    kind = event.get("type")
    frame = f"level2 {kind} of {event.get('product_id')} at {timestamp}"
    if kind not in {"snapshot", "update"}:
        raise MalformedBook(f"{frame}: unknown event type")
    ts = book_time(timestamp, frame)
    updates = event.get("updates")
    if not isinstance(updates, list):
        raise MalformedBook(f"{frame}: updates is not a list")
    sides: tuple[list, list] = ([], [])
    for update in updates:
        try:
            side = BOOK_SIDES[update["side"]]
            level = book_level(update["price_level"], update["new_quantity"], frame)
        except (KeyError, TypeError):
            raise MalformedBook(f"{frame}: bad level {str(update)[:200]} (side must be bid or offer)") from None
        sides[side].append(level)
    return BookMessage(kind == "snapshot", sides[0], sides[1], ts, None, frame)


class CoinbaseSource(Source):
    """Trade snapshot (latest trades, newest first) then updates; order is restored by trade id downstream.

    The book: a level2 snapshot, then updates. Coinbase sends no checksum;
    instead every frame of a connection, whatever its channel, carries the next
    sequence_num, and a gap (a frame lost) means the book may have missed
    levels: the runner then fetches it again (unsubscribe, subscribe).
    """

    book_depth = BOOK_LEVELS

    def __init__(self, market):
        super().__init__(market)
        self.next_sequence: int | None = None

    @property
    def url(self) -> str:
        return settings.COINBASE_WS_URL

    def _frame(self, kind: str, channel: str) -> dict:
        return {"type": kind, "product_ids": [self.market.symbol], "channel": channel}

    def subscribe_frames(self) -> list[dict]:
        self.next_sequence = None  # sequence numbers are per connection
        self.outbox.clear()
        return [
            self._frame("subscribe", "market_trades"),
            # Heartbeats keep the connection open through quiet periods.
            self._frame("subscribe", "heartbeats"),
            self._frame("subscribe", "level2"),
        ]

    def book_resync_frames(self) -> list[dict]:
        return [self._frame("unsubscribe", "level2"), self._frame("subscribe", "level2")]

    def parse(self, message: dict) -> list[Tick] | BookMessage | Unused | bool | None:
        sequence = message.get("sequence_num")
        if sequence is not None:
            expected, self.next_sequence = self.next_sequence, sequence + 1 if isinstance(sequence, int) else None
            if expected is not None and sequence != expected:
                self.book_lost = f"sequence gap: expected {expected}, got {sequence}"
        channel = message.get("channel")
        if message.get("type") == "error":
            raise SubscriptionRejected(
                f"Coinbase rejected the market_trades subscription for {self.market.symbol}: {message.get('message')}"
            )
        events = message.get("events")
        known = channel in {"market_trades", "l2_data", "subscriptions", "heartbeats"} or channel in UNUSED_CHANNELS
        if known and not isinstance(events, list):
            raise MalformedFrame(f"{channel} frame without events: {str(message)[:200]}")
        if channel == "market_trades":
            return [
                coinbase_tick(trade)
                for event in events
                for trade in event.get("trades") or []
                if trade.get("product_id") == self.market.symbol
            ]
        if channel == "l2_data":
            mine = [e for e in events if isinstance(e, dict) and e.get("product_id") == self.market.symbol]
            if len(mine) > 1:
                raise MalformedBook(f"l2_data at {message.get('timestamp')}: {len(mine)} events for one product")
            return book_message(mine[0], message.get("timestamp")) if mine else None
        if channel == "subscriptions":
            subscribed = {p for e in events for p in (e.get("subscriptions") or {}).get("market_trades", [])}
            return True if self.market.symbol in subscribed else None
        if channel == "heartbeats":
            return None
        if channel in UNUSED_CHANNELS:
            return Unused(channel)
        raise MalformedFrame(f"unexpected frame {str(message)[:200]}")
