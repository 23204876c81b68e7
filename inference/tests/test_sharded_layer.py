"""The channel layer sharded over two Redis servers (CHANNEL_LAYER_URLS), one of them restarted under load.

uvicorn in a process of its own and this process (the publisher) both spread the stream's groups over the two
servers by name. While one server is down, the pushes of the groups it carries are lost (pub/sub keeps nothing:
subscribers catch up over REST), and the groups of the other server lose nothing. Once it is back, the web
process's subscriptions on it are restored without any client reconnecting, and every push reaches every
subscriber again, in order.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.layers import get_channel_layer
from websockets.asyncio.client import connect

from core import embedded
from inference.broadcast import group_name, publish
from markets.names import get_or_create_market

from .conftest import AppProcess

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

SUBSCRIBERS = 10  # per market
BASES = ("ETH", "BTC", "SOL", "ADA", "XRP", "DOT", "LTC", "AVAX")  # enough names for a group on each shard
RETURN_BOUND_S = 60.0  # the restarted shard carrying pushes again, on a loaded machine


class Subscriber:
    """A websocket client subscribed to one market's predictions at horizon 1; the n of each push it gets."""

    def __init__(self, url: str, market: str):
        self.url, self.market, self.seen = url, market, []

    async def start(self) -> None:
        self.ws = await connect(self.url)
        await self.ws.send(json.dumps({"action": "subscribe", "channel": "predictions", "market": self.market}))
        assert json.loads(await self.ws.recv())["type"] == "subscribed"
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame)
            assert message["type"] == "prediction", message
            self.seen.append(message["n"])


async def shard_of(layer, group: str) -> int:
    """The index of the server that carries group, as the layer's group_send picks it."""
    loop_layer = layer._get_layer()
    return loop_layer._shards.index(loop_layer._get_shard(loop_layer._get_group_channel_name(group)))


async def until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_every_subscriber_gets_every_push_of_the_shard_that_stays_and_again_once_the_other_returns(tmp_path, settings):
    urls = [embedded.ensure_redis(tmp_path / shard)[0] for shard in ("a", "b")]
    config = {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "hosts": urls}
    settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": config}}
    layer = get_channel_layer()
    on_shard = {}  # shard index -> a market whose horizon-1 predictions group that shard carries
    for base in BASES:
        market = get_or_create_market(f"kraken:{base}-USD")
        on_shard.setdefault(asyncio.run(shard_of(layer, group_name("predictions", market, 1))), market)
    kept, restarted = on_shard[0], on_shard[1]
    published = {kept.name: [], restarted.name: []}

    async def push(market, n: int) -> None:
        await asyncio.to_thread(publish, "predictions", market, [{"type": "prediction", "n": n}], 1)
        published[market.name].append(n)

    async def scenario() -> dict:
        url = app.url("/ws/v1/stream/").replace("http", "ws", 1)
        clients = {m.name: [Subscriber(url, m.name) for _ in range(SUBSCRIBERS)] for m in (kept, restarted)}
        everyone = [c for group in clients.values() for c in group]
        for client in everyone:
            await client.start()

        def all_got(market, n: int) -> bool:
            return all(n in c.seen for c in clients[market.name])

        for n in range(3):  # both shards up
            await push(kept, n)
            await push(restarted, n)
        await until(lambda: all_got(kept, 2) and all_got(restarted, 2), 30)

        embedded.stop_redis(tmp_path / "b")
        for n in range(3, 8):  # the kept shard's groups lose nothing; the stopped one's pushes go nowhere
            await push(kept, n)
            await asyncio.to_thread(publish, "predictions", restarted, [{"type": "prediction", "n": n}], 1)
        await until(lambda: all_got(kept, 7), 30)

        embedded.ensure_redis(tmp_path / "b")
        started, n = time.monotonic(), 8
        while not all(c.seen[-1:] == [n - 1] for c in clients[restarted.name]):  # until a push reaches them all
            assert time.monotonic() - started < RETURN_BOUND_S, "the restarted shard carries no pushes"
            await push(restarted, n)
            await push(kept, n)
            n += 1
            await asyncio.sleep(0.5)
        returned = time.monotonic() - started
        for m in range(n, n + 5):  # from then on, every push to everyone
            await push(kept, m)
            await push(restarted, m)
        await until(lambda: all_got(kept, n + 4) and all_got(restarted, n + 4), 30)
        for client in everyone:
            assert client.reader.done() is False, "a client's connection closed"
            await client.ws.close()
        return {"clients": clients, "returned": returned, "last": n + 4}

    app = AppProcess(tmp_path / "uvicorn.log", env={"CHANNEL_LAYER_URLS": ",".join(urls)})
    try:
        result = asyncio.run(scenario())
    finally:
        app.stop()
        for shard in ("a", "b"):
            embedded.stop_redis(tmp_path / shard)
    for client in result["clients"][kept.name]:
        assert client.seen == published[kept.name], "a subscriber of the shard that stayed missed a push"
    returned_from = min(n for n in published[restarted.name] if n >= 8)
    for client in result["clients"][restarted.name]:
        assert client.seen[:3] == [0, 1, 2]
        assert not set(client.seen) & set(range(3, 8)), "a push published while its shard was down arrived"
        tail = [n for n in published[restarted.name] if n >= client.seen[3]]
        assert client.seen[3:] == tail, "after the shard's return, a push missed or out of order"
        assert client.seen[-1] == result["last"] and client.seen[3] >= returned_from
    print(f"the restarted shard carried pushes again {result['returned']:.1f}s after it was started")
