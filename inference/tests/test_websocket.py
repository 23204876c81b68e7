"""The /ws/v1/stream/ protocol: real websocket clients, uvicorn, the real Redis channel layer."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.wsframes import FrameTransport
from inference.broadcast import group_name
from inference.consumers import StreamConsumer, open_by_address
from inference.hub import _hubs
from inference.models import Prediction
from pipeline.entry import replay

from .conftest import MARKET, Server, api_user

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBE = {"action": "subscribe", "channel": "predictions", "market": MARKET}
HORIZONS = [1, 3, 6]


async def receive(ws, timeout: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ask(ws, message) -> dict:
    await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    return await receive(ws)


def test_malformed_messages_get_error_frames_and_the_connection_stays(server, market):
    async def scenario():
        async with connect(server.ws_url()) as ws:
            assert (await ask(ws, "{not json"))["type"] == "error"
            assert "JSON object" in (await ask(ws, "[1, 2]"))["error"]
            assert "unknown action 'dance'" in (await ask(ws, {"action": "dance"}))["error"]
            assert "unknown action None" in (await ask(ws, {"channel": "predictions"}))["error"]
            # Wrong types (found by test_fuzz.py: a list was looked up as a dict key, and the connection closed 1011).
            assert "unknown action []" in (await ask(ws, {"action": []}))["error"]
            assert "unknown action {'a': 1}" in (await ask(ws, {"action": {"a": 1}}))["error"]
            assert (await ask(ws, b"\x00\x01"))["type"] == "error"
            assert await ask(ws, {"action": "ping"}) == {"type": "pong"}

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_subscription_errors(server, market):
    async def scenario():
        async with connect(server.ws_url()) as ws:
            assert "unknown channel 'trades'" in (await ask(ws, {**SUBSCRIBE, "channel": "trades"}))["error"]
            unknown = await ask(ws, {**SUBSCRIBE, "market": "kraken:BTC-USD"})
            assert "unknown market 'kraken:BTC-USD'" in unknown["error"]
            assert "ill-formed market" in (await ask(ws, {**SUBSCRIBE, "market": "ETHUSD"}))["error"]
            assert "market: expected" in (await ask(ws, {**SUBSCRIBE, "market": 5}))["error"]
            not_subscribed = await ask(ws, {**SUBSCRIBE, "action": "unsubscribe"})
            assert "not subscribed to predictions of kraken:ETH-USD" in not_subscribed["error"]

    asyncio.run(scenario())


def test_anonymous_subscribe_refused_unless_the_setting_allows(server, market):
    async def scenario():
        async with connect(server.ws_url()) as ws:
            refused = await ask(ws, SUBSCRIBE)
            assert refused["type"] == "error" and "authentication required" in refused["error"]
            assert await ask(ws, {"action": "ping"}) == {"type": "pong"}
            with override_settings(API_ANONYMOUS_READ=True):
                assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"

    asyncio.run(scenario())


def test_token_in_query_or_first_message(server, market):
    _, token = api_user()

    async def scenario():
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            subscribed = {"type": "subscribed", "channel": "predictions", "market": MARKET, "horizons": HORIZONS}
            assert await ask(ws, SUBSCRIBE) == subscribed
        async with connect(server.ws_url()) as ws:
            assert await ask(ws, {"action": "auth", "token": token.key}) == {"type": "auth", "ok": True, "user": "bot"}
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"

    asyncio.run(scenario())


@pytest.mark.parametrize(("path", "first"), [("/ws/v1/stream/?token=wrong", None), ("/ws/v1/stream/", "wrong")])
def test_invalid_token_gets_an_error_frame_then_close_4401(server, market, path, first):
    async def scenario():
        async with connect(server.ws_url(path)) as ws:
            if first is not None:
                await ws.send(json.dumps({"action": "auth", "token": first}))
            assert await receive(ws) == {"type": "error", "error": "invalid token"}
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd.code == 4401

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True, WS_MAX_SUBSCRIPTIONS=1)
def test_subscription_limit_per_connection(server, market):
    async def scenario():
        async with connect(server.ws_url()) as ws:
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"  # the same one again is not a new one
            limited = await ask(ws, {**SUBSCRIBE, "channel": "candles"})
            assert limited == {"type": "error", "error": "subscription limit reached (1 per connection)"}
            assert (await ask(ws, {**SUBSCRIBE, "action": "unsubscribe"}))["type"] == "unsubscribed"
            assert (await ask(ws, {**SUBSCRIBE, "channel": "candles"}))["type"] == "subscribed"

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_pushes_predictions_and_candles_of_subscribed_markets_only(server, market, parts):
    async def scenario():
        async with (
            connect(server.ws_url()) as predictions,
            connect(server.ws_url()) as candles,
            connect(server.ws_url()) as unsubscribed,
        ):
            assert (await ask(predictions, SUBSCRIBE))["type"] == "subscribed"
            assert (await ask(candles, {**SUBSCRIBE, "channel": "candles"}))["type"] == "subscribed"
            assert (await ask(unsubscribed, SUBSCRIBE))["type"] == "subscribed"
            assert (await ask(unsubscribed, {**SUBSCRIBE, "action": "unsubscribe"}))["type"] == "unsubscribed"

            await database_sync_to_async(replay)(parts[0], market)
            newest = await database_sync_to_async(Prediction.objects.filter(market=market).latest)("made_at")

            # Each horizon: a backlog pushes its newest 10 (the replay's main batch), then the flushed last window.
            pushed = [await receive(predictions) for _ in range(11 * len(HORIZONS))]
            assert {p["type"] for p in pushed} == {"prediction"}
            for horizon in HORIZONS:
                made = [p["made_at"] for p in pushed if p["horizon"] == horizon]
                assert len(made) == 11 and sorted(made) == made
                assert made[-1] == newest.made_at.isoformat().replace("+00:00", "Z")
            last = pushed[-1]
            assert last["market"] == MARKET
            assert last["model"] == {"id": None, "version": None, "algorithm": "persistence"}
            assert all(isinstance(last[k], str) for k in ("price", "lower", "upper", "target_time"))

            candle = await receive(candles)
            assert candle["type"] == "candle" and candle["market"] == MARKET and isinstance(candle["close"], str)
            assert await ask(unsubscribed, {"action": "ping"}) == {"type": "pong"}  # nothing pushed before it

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_many_concurrent_subscribers_receive_every_push_in_order(server, market):
    """Subscribers joining at once share one hub subscription per process; each gets every push."""
    from inference.broadcast import publish

    async def scenario():
        async def subscriber() -> list:
            async with connect(server.ws_url()) as ws:
                assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
                subscribed.release()
                return [await receive(ws) for _ in range(3)]

        subscribed = asyncio.Semaphore(0)
        clients = [asyncio.ensure_future(subscriber()) for _ in range(20)]
        for _ in clients:
            await subscribed.acquire()
        for i in range(3):  # separate publications, as at successive candle closes
            await asyncio.to_thread(publish, "predictions", market, [{"type": "prediction", "n": i}], 1)
        return await asyncio.gather(*clients)

    for received in asyncio.run(scenario()):
        assert [m["n"] for m in received] == [0, 1, 2]


@override_settings(API_ANONYMOUS_READ=True)
def test_a_push_is_one_frame_written_to_every_transport_not_an_asgi_send(server, market, monkeypatch):
    """The hub frames a publication once; each subscriber's transport is written those very bytes."""
    from inference.broadcast import publish

    sent, written = [], []
    asgi_send, write = StreamConsumer.send, FrameTransport.write

    async def send(self, *args, **kwargs):
        sent.append(kwargs)
        await asgi_send(self, *args, **kwargs)

    def frame_write(self, frame: bytes) -> None:
        written.append(frame)
        write(self, frame)

    monkeypatch.setattr(StreamConsumer, "send", send)
    monkeypatch.setattr(FrameTransport, "write", frame_write)

    async def scenario() -> list:
        async with connect(server.ws_url()) as first, connect(server.ws_url()) as second:
            for ws in (first, second):
                assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            sent.clear()
            await asyncio.to_thread(publish, "predictions", market, [{"type": "prediction", "n": 7}], 1)
            return [await receive(first), await receive(second)]

    assert asyncio.run(scenario()) == [{"type": "prediction", "n": 7}] * 2
    assert sent == [], "a push went through ASGI send()"
    assert len(written) == 2 and written[0] is written[1]


@override_settings(API_ANONYMOUS_READ=True)
def test_with_per_message_deflate_pushes_go_through_the_outbox_and_asgi(thread_connections_close, market):
    """A compressed connection's frames differ from the shared one: no transport is offered, pushes still arrive."""
    from inference.broadcast import publish

    async def scenario() -> tuple[list, list]:
        async with connect(deflating.ws_url()) as ws:
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            members = [c for h in list(_hubs.values()) for c in h.members.get(group_name("predictions", market, 1), ())]
            for n in range(3):
                await asyncio.to_thread(publish, "predictions", market, [{"type": "prediction", "n": n}], 1)
            return [c.frames for c in members], [(await receive(ws))["n"] for _ in range(3)]

    with Server(deflate=True) as deflating:
        frames, received = asyncio.run(scenario())
    assert frames == [None] and received == [0, 1, 2]


def subscribers(market, channel: str = "predictions", horizon: int | None = 1) -> int:
    """Connections of the server process subscribed to channel of market (read from every event loop's hub)."""
    group = group_name(channel, market, horizon if channel == "predictions" else None)
    return sum(len(h.members.get(group, ())) for h in list(_hubs.values()))


async def released(market, timeout: float = 30.0) -> list[int]:
    """Subscribers of market at each horizon once none is left, or at the timeout: the server learns of a
    close a moment after the client has seen it."""
    deadline = time.monotonic() + timeout
    while any(counts := [subscribers(market, horizon=h) for h in HORIZONS]) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return counts


@override_settings(API_ANONYMOUS_READ=True)
def test_predictions_of_one_horizon_or_of_every_horizon(server, market, parts):
    async def scenario():
        async with connect(server.ws_url()) as one, connect(server.ws_url()) as every:
            assert await ask(one, {**SUBSCRIBE, "horizon": 3}) == {
                "type": "subscribed",
                "channel": "predictions",
                "market": MARKET,
                "horizons": [3],
            }
            assert (await ask(every, SUBSCRIBE))["horizons"] == HORIZONS
            await database_sync_to_async(replay)(parts[0], market)
            from_one = [await receive(one) for _ in range(11)]
            from_every = [await receive(every) for _ in range(11 * len(HORIZONS))]
            assert await ask(one, {"action": "ping"}) == {"type": "pong"}  # nothing of another horizon queued
            assert {p["horizon"] for p in from_one} == {3}
            assert {p["horizon"] for p in from_every} == set(HORIZONS)
            assert from_one == [p for p in from_every if p["horizon"] == 3]
            for p in from_every:
                ahead = datetime.fromisoformat(p["target_time"]) - datetime.fromisoformat(p["made_at"])
                assert ahead == timedelta(seconds=10 * p["horizon"])

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_bad_horizons_get_error_frames_and_subscriptions_overlap_cleanly(server, market):
    async def scenario():
        async with connect(server.ws_url()) as ws:
            for bad in [2, 0, -1, 1.5, True, "x", [3]]:
                frame = await ask(ws, {**SUBSCRIBE, "horizon": bad})
                assert frame["type"] == "error" and frame["error"].startswith("horizon: expected one of 1, 3, 6"), bad
            candles = await ask(ws, {**SUBSCRIBE, "channel": "candles", "horizon": 1})
            assert candles == {"type": "error", "error": "horizon: only predictions have horizons, not candles"}
            assert await ask(ws, {"action": "ping"}) == {"type": "pong"}  # still open

            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            assert (await ask(ws, {**SUBSCRIBE, "horizon": 3}))["type"] == "subscribed"
            assert [subscribers(market, horizon=h) for h in HORIZONS] == [1, 1, 1]
            not_subscribed = await ask(ws, {**SUBSCRIBE, "action": "unsubscribe", "horizon": 6})
            assert not_subscribed["error"] == f"not subscribed to predictions of {MARKET} at horizon 6"
            assert (await ask(ws, {**SUBSCRIBE, "action": "unsubscribe"}))["horizons"] == HORIZONS
            assert [subscribers(market, horizon=h) for h in HORIZONS] == [0, 1, 0]  # horizon 3 is still asked for
        assert await released(market) == [0, 0, 0]

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_a_failing_consumer_closes_1011_and_releases_its_subscriptions(server, market, monkeypatch):
    async def broken(self, message):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(StreamConsumer, "on_ping", broken)

    async def scenario():
        async with connect(server.ws_url()) as ws:
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            assert subscribers(market) == 1
            await ws.send(json.dumps({"action": "ping"}))
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd.code == 1011
        assert await released(market) == [0, 0, 0]  # no dead connection left subscribed

    asyncio.run(scenario())


@override_settings(API_ANONYMOUS_READ=True)
def test_deeply_nested_messages_are_refused_before_parsing(server, market):
    nested = "[" * 100_000 + "]" * 100_000

    async def scenario():
        async with connect(server.ws_url()) as ws:
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
            # 200 kB: above WS_MAX_MESSAGE_BYTES, an error frame and close 1009 (see the next test).
            assert "message too big: 200000 bytes" in (await ask(ws, nested))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd.code == 1009
        assert await released(market) == [0, 0, 0]
        with override_settings(WS_MAX_MESSAGE_BYTES=1_000_000):  # let it through to the nesting check
            async with connect(server.ws_url()) as ws:
                for deep in (nested, '{"action": "ping", "x": ' + "[" * 20 + "]" * 20 + "}"):
                    error = await ask(ws, deep)
                    assert error == {"type": "error", "error": "expected one flat JSON object: more than 16 brackets"}
                assert await ask(ws, {"action": "ping"}) == {"type": "pong"}  # the connection stays

    asyncio.run(scenario())


def test_error_frames_quote_a_short_excerpt_and_big_frames_close_1009(server, market):
    long = "x" * 3_000

    async def scenario():
        async with connect(server.ws_url()) as ws:
            with override_settings(API_ANONYMOUS_READ=True):
                for message in ({"action": long}, {**SUBSCRIBE, "channel": long}, {**SUBSCRIBE, "market": long}):
                    error = (await ask(ws, message))["error"]
                    assert "x" * 50 in error and "x" * 60 not in error and len(error) < 200
            assert await ask(ws, {"action": "ping", "pad": "y" * 4_000}) == {"type": "pong"}  # 4,035 bytes: fits
            frame = json.dumps({"action": "ping", "pad": "é" * 2_100}, ensure_ascii=False)
            assert len(frame) < 4096 < len(frame.encode())  # bytes are counted, not characters
            error = await ask(ws, frame)
            assert error == {"type": "error", "error": f"message too big: {len(frame.encode())} bytes, at most 4096"}
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
            assert closed.value.rcvd.code == 1009

    asyncio.run(scenario())


def test_a_session_counts_only_from_a_page_of_allowed_hosts(server, market):
    """Cross-site websocket hijacking: another site's page gets no session; tokens work from anywhere."""
    trader = get_user_model().objects.create_user("trader", password="not-used")
    browser = Client()
    browser.force_login(trader)
    cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"}
    _, token = api_user()
    own, evil = f"http://127.0.0.1:{server.port}", "http://evil.com"

    async def scenario():
        for origin in (own, None):  # the site's own page, or not a browser at all (no Origin header)
            async with connect(server.ws_url(), origin=origin, additional_headers=cookie) as ws:
                assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
        async with connect(server.ws_url(), origin=evil, additional_headers=cookie) as ws:
            refused = await ask(ws, SUBSCRIBE)
            assert refused["type"] == "error" and "authentication required" in refused["error"]
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}"), origin=evil) as ws:
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"
        async with connect(server.ws_url(), origin=evil, additional_headers=cookie) as ws:
            assert (await ask(ws, {"action": "auth", "token": token.key}))["ok"]
            assert (await ask(ws, SUBSCRIBE))["type"] == "subscribed"

    asyncio.run(scenario())


def test_a_handshake_to_an_unknown_path_is_404(server):
    async def scenario():
        for path in ("/ws/v1/nope/", "/", "/ws/v1/stream/extra"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.ws_url(path)):
                    pass
            assert refused.value.response.status_code == 404
            assert refused.value.response.headers["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY

    asyncio.run(scenario())


@override_settings(WS_MAX_CONNECTIONS_PER_ADDRESS=3)
def test_connections_per_address_are_capped(server, market):
    async def scenario():
        opened = [await connect(server.ws_url()) for _ in range(3)]
        for ws in opened:
            assert await ask(ws, {"action": "ping"}) == {"type": "pong"}
        async with connect(server.ws_url()) as extra:
            assert "too many connections from 127.0.0.1: at most 3" in (await receive(extra))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                await receive(extra)
            assert closed.value.rcvd.code == 1008
        await opened.pop().close()
        deadline = asyncio.get_running_loop().time() + 10
        while open_by_address["127.0.0.1"] >= 3:  # the server has released the closed one
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        async with connect(server.ws_url()) as again:
            assert await ask(again, {"action": "ping"}) == {"type": "pong"}
        for ws in opened:
            await ws.close()

    asyncio.run(scenario())
