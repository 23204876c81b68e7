"""The websocket stream /ws/v1/stream/: subscribe to a market's predictions or candles.

Protocol (JSON text frames):
  client: {"action": "auth", "token": "..."} (or ?token= in the URL), {"action": "ping"},
          {"action": "subscribe" | "unsubscribe", "channel": "predictions" | "candles", "market": "kraken:ETH-USD"}
          (predictions: "horizon": 3 for one horizon of PREDICTION_HORIZONS; without it, every horizon)
  server: {"type": "auth" | "pong" | "subscribed" | "unsubscribed", ...} (for predictions with "horizons", the
          ones the subscription sends), {"type": "prediction", "horizon": 3, ...},
          {"type": "candle", ...}, {"type": "error", "error": "..."}
A malformed message gets an error frame that quotes at most a short excerpt of it; an invalid, expired or revoked
token closes the connection (code 4401), and so does a token that stops being valid while the connection is open
(re-checked every API_TOKEN_CACHE_S, at most once a second, and at its expiry); a frame above WS_MAX_MESSAGE_BYTES
closes it with 1009, any failure of the consumer itself with 1011 (its subscriptions released).

A client that reads slower than pushes arrive has at most OUTBOX_SIZE of them queued for it: the oldest queued
is dropped for each new one (counted in cryptopred_ws_pushes_dropped_total), and the next frame it gets is
{"type": "dropped", "count": n}, then the newest pushes in order (what it missed is on the REST API).

Under uvicorn with core.wsframes' protocol a push is written to the connection's transport as the frame
the hub encoded once for every subscriber: nothing per delivery but a write, while the client keeps up.
Otherwise (another server, or a client whose transport buffer is full) it waits in the outbox for the writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from uvicorn.protocols.utils import ClientDisconnected

from core import horizons, prometheus
from core.wsframes import FRAMES
from inference.api.authentication import TokenRefused, check, remembered
from inference.api.permissions import may_read
from inference.broadcast import CHANNELS, group_name
from inference.hub import Push, hub
from markets.names import MarketError, get_market

INVALID_TOKEN = 4401
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
MAX_BRACKETS = 16  # every message is one flat object: more brackets than this are refused before parsing
MAX_NAME = 64  # characters of a market name worth looking up (and quoting back)
OUTBOX_SIZE = 100  # pushes queued for a client that does not read; beyond it the oldest are dropped
MIN_RECHECK_S = 1.0  # an open connection re-checks its token at most this often

log = logging.getLogger(__name__)

# Open connections of this process by client address. Per process, not in Redis: nothing to leak when a
# process dies, and no round trip (nor a Redis outage) in the way of a handshake; with WEB_CONCURRENCY
# processes an address may hold up to that many times WS_MAX_CONNECTIONS_PER_ADDRESS in all.
open_by_address: collections.Counter[str] = collections.Counter()


async def token_credentials(key: str) -> tuple:
    """(user, token) as the REST API checks a key (the same per-process cache); TokenRefused otherwise."""
    return remembered(key, settings.API_TOKEN_CACHE_S) or await database_sync_to_async(check)(key)


@database_sync_to_async
def find_market(name: str):
    return get_market(name)


class StreamConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None  # pushes come through the process's hub, not a channel per connection

    async def connect(self) -> None:
        self.address = (self.scope.get("client") or ("",))[0]
        if open_by_address[self.address] >= settings.WS_MAX_CONNECTIONS_PER_ADDRESS:
            self.refused = True
            await self.accept()
            await self.error(
                f"too many connections from {self.address}: at most {settings.WS_MAX_CONNECTIONS_PER_ADDRESS}"
            )
            await self.close(code=POLICY_VIOLATION)
            return
        open_by_address[self.address] += 1  # before any await: concurrent handshakes see it
        self.refused, self.holds_address = False, True
        self.user = self.scope.get("user")
        # (channel, market name, horizon or None for all) -> its groups (predictions: one per horizon)
        self.subscriptions: dict[tuple[str, str, int | None], tuple[str, ...]] = {}
        self.frames = self.scope.get("extensions", {}).get(FRAMES)  # the server's FrameTransport, if it offers one
        self.outbox: collections.deque[Push] = collections.deque()  # at most OUTBOX_SIZE: see push()
        self.pending = asyncio.Event()  # set when the outbox has pushes for the writer
        self.dropped = 0  # pushes dropped since the client last got a frame from the outbox
        self.dropped_total = 0
        self.writer = asyncio.ensure_future(self.write())
        self.watcher: asyncio.Future | None = None  # re-checks the token the connection authenticated with
        await self.accept()
        prometheus.WS_CONNECTIONS.inc()
        self.counted = True  # in cryptopred_ws_connections, until release()
        key = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if key:
            await self.authenticate(key)

    async def disconnect(self, code: int) -> None:
        await self.release()

    async def release(self) -> None:
        """Stop writing and leave every subscription (idempotent)."""
        if writer := getattr(self, "writer", None):
            writer.cancel()
        if watcher := getattr(self, "watcher", None):
            watcher.cancel()
        if getattr(self, "holds_address", False):
            self.holds_address = False
            open_by_address[self.address] -= 1
            if open_by_address[self.address] <= 0:
                del open_by_address[self.address]
        if getattr(self, "counted", False):
            self.counted = False
            prometheus.WS_CONNECTIONS.dec()
            if self.dropped_total:
                log.info("websocket client %s: %d pushes dropped in all", self.scope.get("client"), self.dropped_total)
        subscriptions, self.subscriptions = getattr(self, "subscriptions", {}), {}
        for channel, _, _ in subscriptions:
            prometheus.WS_SUBSCRIPTIONS.labels(channel).dec()
        for group in {group for groups in subscriptions.values() for group in groups}:
            with contextlib.suppress(Exception):  # the hub forgets the member before it talks to Redis
                await hub().leave(group, self)

    async def dispatch(self, message: dict) -> None:
        """Any failure of a handler closes the connection (1011) and releases it: never a dead subscriber."""
        try:
            await super().dispatch(message)
        except StopConsumer:
            raise
        except ClientDisconnected:  # the client went away while its message was handled: nothing to answer
            log.info("websocket %s: client disconnected during %s", self.scope.get("client"), message.get("type"))
            await self.release()
            raise StopConsumer from None
        except Exception:
            log.exception("websocket %s: %s failed; closing (1011)", self.scope.get("client"), message.get("type"))
            await self.release()
            if message.get("type") != "websocket.disconnect":
                with contextlib.suppress(Exception):
                    await self.close(code=INTERNAL_ERROR)
            raise StopConsumer from None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.refused:  # closing: nothing it sends is read
            return
        # Limits first, parsing after: size, then nesting (a bracket count, as cheap as the frame is short).
        size = (
            len(bytes_data) if text_data is None else len(text_data) if text_data.isascii() else len(text_data.encode())
        )
        if size > settings.WS_MAX_MESSAGE_BYTES:
            await self.error(f"message too big: {size} bytes, at most {settings.WS_MAX_MESSAGE_BYTES}")
            await self.close(code=MESSAGE_TOO_BIG)
            await self.release()
            return
        if text_data is None:
            await self.error("expected a JSON object text frame, got a binary frame")
            return
        if text_data.count("{") + text_data.count("[") > MAX_BRACKETS:
            await self.error(f"expected one flat JSON object: more than {MAX_BRACKETS} brackets")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
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
        }.get(action if isinstance(action, str) else "")  # a list or an object is no action (nor hashable)
        if handler is None:
            await self.error(f"unknown action {excerpt(action)}: expected auth, ping, subscribe or unsubscribe")
            return
        await handler(message)

    async def authenticate(self, key: object) -> bool:
        try:
            if not isinstance(key, str) or not key:
                raise TokenRefused("invalid")
            user, token = await token_credentials(key)
        except TokenRefused as refused:
            await self.refuse(refused)
            return False
        self.user = user
        if self.watcher is not None:
            self.watcher.cancel()
        self.watcher = asyncio.ensure_future(self.watch(key, token))
        return True

    async def refuse(self, refused: TokenRefused) -> None:
        await self.error(refused.frame_text)
        await self.close(code=INVALID_TOKEN)

    async def watch(self, key: str, token) -> None:
        """Close the connection (4401) once its token is revoked, rotated, deleted or expired, or its user is
        deactivated: checked every API_TOKEN_CACHE_S (at most once a second) and at the token's expiry."""
        while True:
            wait = max(settings.API_TOKEN_CACHE_S, MIN_RECHECK_S)
            if token.expires is not None:
                wait = min(wait, max(token.expires.timestamp() - time.time(), 0.0) + 0.01)
            await asyncio.sleep(wait)
            try:
                _, token = await token_credentials(key)
                continue
            except TokenRefused as refused:
                code, frame = INVALID_TOKEN, refused.frame_text
            except Exception:  # the database is down, say: the token cannot be vouched for any longer
                log.exception("websocket %s: token re-check failed; closing (1011)", self.scope.get("client"))
                code, frame = INTERNAL_ERROR, None
            self.watcher = None  # release() must not cancel this very task
            with contextlib.suppress(Exception):
                if frame is not None:
                    await self.error(frame)
                await self.close(code=code)
            await self.release()
            return

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
        key, groups = target
        if key not in self.subscriptions:
            if len(self.subscriptions) >= settings.WS_MAX_SUBSCRIPTIONS:
                await self.error(f"subscription limit reached ({settings.WS_MAX_SUBSCRIPTIONS} per connection)")
                return
            self.subscriptions[key] = groups
            prometheus.WS_SUBSCRIPTIONS.labels(key[0]).inc()
            for group in groups:  # a group already joined by another subscription stays one membership
                await hub().join(group, self)
        await self.reply({"type": "subscribed", **described(key)})

    async def on_unsubscribe(self, message: dict) -> None:
        target = await self.target(message)
        if target is None:
            return
        key, _ = target
        groups = self.subscriptions.pop(key, None)
        if groups is None:
            at = "" if key[2] is None else f" at horizon {key[2]}"
            await self.error(f"not subscribed to {key[0]} of {key[1]}{at}")
            return
        prometheus.WS_SUBSCRIPTIONS.labels(key[0]).dec()
        kept = {group for others in self.subscriptions.values() for group in others}
        for group in set(groups) - kept:
            await hub().leave(group, self)
        await self.reply({"type": "unsubscribed", **described(key)})

    async def target(self, message: dict) -> tuple[tuple[str, str, int | None], tuple[str, ...]] | None:
        """((channel, market name, horizon), groups) of a (un)subscribe message, or None after an error frame."""
        channel = message.get("channel")
        if channel not in CHANNELS:
            await self.error(f"unknown channel {excerpt(channel)}: expected one of {', '.join(CHANNELS)}")
            return None
        name = message.get("market")
        if not isinstance(name, str) or len(name) > MAX_NAME:
            await self.error(f"market: expected a name like kraken:ETH-USD, got {excerpt(name)}")
            return None
        horizon = message.get("horizon")
        if horizon is not None:
            if channel != "predictions":
                await self.error(f"horizon: only predictions have horizons, not {channel}")
                return None
            try:
                horizon = horizons.parse(horizon)
            except horizons.HorizonError as exc:
                await self.error(f"horizon: {exc}")
                return None
        try:
            market = await find_market(name)
        except MarketError as exc:
            await self.error(str(exc))
            return None
        if channel != "predictions":
            return (channel, market.name, None), (group_name(channel, market),)
        ahead = horizons.configured() if horizon is None else (horizon,)
        return (channel, market.name, horizon), tuple(group_name(channel, market, h) for h in ahead)

    def push(self, push: Push) -> None:
        """A prediction or candle from the hub (framed once for all subscribers), to send in order.

        With nothing queued and the transport taking writes, its frame is written now: no task woken, no
        ASGI message. Otherwise it joins the outbox, and the writer is woken (once, however many pushes
        a fan-out queues before the writer runs). A full outbox drops its oldest push: a stale prediction
        is worth less than the newest one, and a client that catches up gets the current state first.
        Logged once per connection, not per drop.
        """
        if not self.outbox and self.frames is not None and self.frames.ready():
            self.frames.write(push.frame)
            return
        if len(self.outbox) >= OUTBOX_SIZE:
            self.outbox.popleft()
            self.dropped += 1
            self.dropped_total += 1
            prometheus.WS_DROPPED.inc()
            if self.dropped_total == 1:
                log.warning("websocket client %s is not reading: dropping its oldest pushes", self.scope.get("client"))
        self.outbox.append(push)
        self.pending.set()

    async def write(self) -> None:
        """Send the outbox in order, a dropped notice before the first push after a gap.

        Each push is sent only once the connection's write buffer is below its low-water mark (uvicorn's
        send() waits for it too): a client that does not read holds this task, not memory, and its pushes
        wait (and drop) in the outbox.
        """
        with contextlib.suppress(ClientDisconnected):  # gone: release() follows with the disconnect
            while True:
                await self.pending.wait()
                self.pending.clear()
                while self.outbox:
                    if self.frames is not None:
                        await self.frames.drained()
                        if not self.frames.ready():  # closing: nothing more is written
                            return
                    if self.dropped:
                        count, self.dropped = self.dropped, 0
                        await self.deliver(Push.of(json.dumps({"type": "dropped", "count": count})))
                    await self.deliver(self.outbox.popleft())

    async def deliver(self, push: Push) -> None:
        if self.frames is not None:
            self.frames.write(push.frame)
        else:
            await self.send(text_data=push.text)

    async def reply(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload))

    async def error(self, text: str) -> None:
        await self.reply({"type": "error", "error": text})


def described(key: tuple[str, str, int | None]) -> dict:
    """A subscription as the (un)subscribed frame names it: predictions with the horizons it sends."""
    channel, name, horizon = key
    found = {"channel": channel, "market": name}
    if channel == "predictions":
        found["horizons"] = list(horizons.configured()) if horizon is None else [horizon]
    return found


def excerpt(value: object, limit: int = 60) -> str:
    """repr() of a client's value for an error frame, cut to limit characters: never the whole input back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
