"""The websocket stream /ws/v1/stream/: subscribe to a market's predictions or candles.

Protocol (JSON text frames):
  client: {"action": "auth", "token": "..."} (or ?token= in the URL), {"action": "ping"},
          {"action": "subscribe" | "unsubscribe", "channel": "predictions" | "candles", "market": "kraken:ETH-USD"}
  server: {"type": "auth" | "pong" | "subscribed" | "unsubscribed", ...}, {"type": "prediction", ...},
          {"type": "candle", ...}, {"type": "error", "error": "..."}
A malformed message gets an error frame; only an invalid token closes the connection (code 4401).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from rest_framework.authtoken.models import Token

from core import metrics
from inference.api.permissions import may_read
from inference.broadcast import CHANNELS, group_name
from inference.hub import hub
from markets.services import MarketError, get_market

INVALID_TOKEN = 4401
OUTBOX_SIZE = 100  # pushes queued for a client that does not read; more are dropped

log = logging.getLogger(__name__)


@database_sync_to_async
def token_user(key: str):
    """The active user owning the token, or None."""
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


@database_sync_to_async
def find_market(name: str):
    return get_market(name)


class StreamConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None  # pushes come through the process's hub, not a channel per connection

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.subscriptions: dict[tuple[str, str], str] = {}  # (channel, market name) -> group
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.writer = asyncio.ensure_future(self.write())
        await self.accept()
        metrics.WS_CONNECTIONS.inc()
        key = parse_qs(self.scope.get("query_string", b"").decode()).get("token", [""])[0]
        if key:
            await self.authenticate(key)

    async def disconnect(self, code: int) -> None:
        self.writer.cancel()
        metrics.WS_CONNECTIONS.dec()
        for (channel, _), group in self.subscriptions.items():
            metrics.WS_SUBSCRIPTIONS.labels(channel).dec()
            await hub().leave(group, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data) if text_data is not None else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self.error("expected a JSON object text frame")
            return
        action = message.get("action")
        handler = {
            "auth": self.on_auth,
            "ping": self.on_ping,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
        }.get(action)
        if handler is None:
            await self.error(f"unknown action {action!r}: expected auth, ping, subscribe or unsubscribe")
            return
        await handler(message)

    async def authenticate(self, key: object) -> bool:
        user = await token_user(key) if isinstance(key, str) and key else None
        if user is None:
            await self.error("invalid token")
            await self.close(code=INVALID_TOKEN)
            return False
        self.user = user
        return True

    async def on_auth(self, message: dict) -> None:
        if await self.authenticate(message.get("token")):
            await self.reply({"type": "auth", "ok": True, "user": self.user.get_username()})

    async def on_ping(self, message: dict) -> None:
        await self.reply({"type": "pong"})

    async def on_subscribe(self, message: dict) -> None:
        if not may_read(self.user):
            await self.error('authentication required: send {"action": "auth", "token": ...} or use ?token=')
            return
        target = await self.target(message)
        if target is None:
            return
        channel, name, group = target
        if (channel, name) not in self.subscriptions:
            if len(self.subscriptions) >= settings.WS_MAX_SUBSCRIPTIONS:
                await self.error(f"subscription limit reached ({settings.WS_MAX_SUBSCRIPTIONS} per connection)")
                return
            self.subscriptions[channel, name] = group
            metrics.WS_SUBSCRIPTIONS.labels(channel).inc()
            await hub().join(group, self)
        await self.reply({"type": "subscribed", "channel": channel, "market": name})

    async def on_unsubscribe(self, message: dict) -> None:
        target = await self.target(message)
        if target is None:
            return
        channel, name, _ = target
        group = self.subscriptions.pop((channel, name), None)
        if group is None:
            await self.error(f"not subscribed to {channel} of {name}")
            return
        metrics.WS_SUBSCRIPTIONS.labels(channel).dec()
        await hub().leave(group, self)
        await self.reply({"type": "unsubscribed", "channel": channel, "market": name})

    async def target(self, message: dict) -> tuple[str, str, str] | None:
        """(channel, market name, group) of a (un)subscribe message, or None after an error frame."""
        channel = message.get("channel")
        if channel not in CHANNELS:
            await self.error(f"unknown channel {channel!r}: expected one of {', '.join(CHANNELS)}")
            return None
        name = message.get("market")
        if not isinstance(name, str):
            await self.error("market: expected a name like kraken:ETH-USD")
            return None
        try:
            market = await find_market(name)
        except MarketError as exc:
            await self.error(str(exc))
            return None
        return channel, market.name, group_name(channel, market)

    def push(self, text: str) -> None:
        """A prediction or candle from the pipeline (encoded once for all subscribers), to send in order."""
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            metrics.WS_DROPPED.inc()
            log.warning("websocket client %s is not reading: push dropped", self.scope.get("client"))

    async def write(self) -> None:
        while True:
            await self.send(text_data=await self.outbox.get())

    async def reply(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload))

    async def error(self, text: str) -> None:
        await self.reply({"type": "error", "error": text})
