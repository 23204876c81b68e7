"""Coinbase Advanced Trade WebSocket, `market_trades` channel (no public gap-fill history)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from markets.candles import Tick
from markets.sources.base import MalformedFrame, Source, SubscriptionRejected
from markets.tradefile import parse_ts

# Coinbase reports the maker's side; trades here carry the taker's.
TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}


def coinbase_tick(item: dict) -> Tick:
    try:
        return Tick(
            trade_id=int(item["trade_id"]),
            ts=parse_ts(item["time"]),
            price=Decimal(item["price"]),
            qty=Decimal(item["size"]),
            side=TAKER_SIDE[item["side"]],
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedFrame(f"bad trade {item!r}: {type(exc).__name__} {exc}") from None


class CoinbaseSource(Source):
    """Snapshot (latest trades, newest first) then updates; order is restored by trade id downstream."""

    @property
    def url(self) -> str:
        return settings.COINBASE_WS_URL

    def subscribe_frames(self) -> list[dict]:
        products = [self.market.symbol]
        return [
            {"type": "subscribe", "product_ids": products, "channel": "market_trades"},
            # Heartbeats keep the connection open through quiet periods.
            {"type": "subscribe", "product_ids": products, "channel": "heartbeats"},
        ]

    def parse(self, message: dict) -> list[Tick] | bool | None:
        channel = message.get("channel")
        if message.get("type") == "error":
            raise SubscriptionRejected(
                f"Coinbase rejected the market_trades subscription for {self.market.symbol}: {message.get('message')}"
            )
        events = message.get("events")
        if channel in {"market_trades", "subscriptions", "heartbeats"} and not isinstance(events, list):
            raise MalformedFrame(f"{channel} frame without events: {str(message)[:200]}")
        if channel == "market_trades":
            return [
                coinbase_tick(trade)
                for event in events
                for trade in event.get("trades") or []
                if trade.get("product_id") == self.market.symbol
            ]
        if channel == "subscriptions":
            subscribed = {p for e in events for p in (e.get("subscriptions") or {}).get("market_trades", [])}
            return True if self.market.symbol in subscribed else None
        if channel == "heartbeats":
            return None
        raise MalformedFrame(f"unexpected frame {str(message)[:200]}")
