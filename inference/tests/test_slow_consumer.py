"""A websocket subscriber that never reads, next to 200 that do: against uvicorn in a process of its own.

The fast subscribers must get every push, in order, as soon as it is published (each round waits until all
200 have it); the slow one's pushes wait in its bounded outbox, the oldest dropped and counted; the server's
memory stays flat however many more are published.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from statistics import median

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from inference.broadcast import publish
from inference.consumers import OUTBOX_SIZE

from .conftest import MARKET, AppProcess

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

FAST = 200
PAD = 16 * 1024  # characters per push: a queue that grew with the pushes would show in the server's memory
# The slow connection's kernel buffers take up to 4 MiB (Linux's default tcp_wmem maximum: 256 pushes), the
# transport 64 KiB, then its outbox fills: from the first drop on, every push drops one. How many pushes the
# buffers take varies with the kernel, so the test publishes until the first drop, then STEADY more.
STEADY = 200
MOST_BEFORE_A_DROP = 700
# Publication -> all fast subscribers, per round: a round that waited for the stalled client would never end; a
# 2-core machine at load 8 stays well within this.
ROUND_BOUND_S = 10.0
RSS_BOUND = 2**20  # growth of the server's memory over the STEADY pushes; unbounded: 200 x 16 KiB = 3.2 MiB
SUBSCRIBE = json.dumps({"action": "subscribe", "channel": "predictions", "market": MARKET})


def dropped_total(app: AppProcess) -> float:
    text = httpx.get(app.url("/metrics"), timeout=10).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "cryptopred_ws_pushes_dropped")
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


class StalledClient:
    """A websocket client that stops reading its socket after subscribing, as a stuck process would.

    Driven by hand (websockets' sans-I/O protocol over a blocking socket) so that no library reads on its
    behalf; a fixed receive buffer (the kernel's would grow to 32 MiB) keeps the bytes in flight to the server's.
    """

    def __init__(self, url: str, port: int):
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.frames: list[Frame] = []
        self.protocol.send_request(self.protocol.connect())
        self.flush()
        while self.protocol.state is not State.OPEN:
            self.read()
        self.protocol.send_text(SUBSCRIBE.encode())
        self.flush()
        assert json.loads(self.recv())["type"] == "subscribed"

    def flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def read(self) -> None:
        self.protocol.receive_data(self.sock.recv(65536))
        self.frames += [e for e in self.protocol.events_received() if getattr(e, "opcode", None) is Opcode.TEXT]

    def recv(self) -> str:
        """The next frame's text."""
        while not self.frames:
            self.read()
        return self.frames.pop(0).data.decode()


def push(n: int) -> dict:
    return {"type": "prediction", "n": n, "pad": "x" * PAD}


def number(frame: bytes) -> int:
    """n of a push, read from its head: 200 clients parsing 16 KiB of padding would slow the rounds down."""
    return json.loads(frame[: frame.index(b',"pad"')] + b"}")["n"]


async def subscribed(ws) -> None:
    await ws.send(SUBSCRIBE)
    assert json.loads(await ws.recv())["type"] == "subscribed"


async def scenario(app: AppProcess, market) -> dict:
    url = app.url("/ws/v1/stream/").replace("http", "ws", 1)
    most = MOST_BEFORE_A_DROP + STEADY
    done = [asyncio.Event() for _ in range(most)]
    arrived = [0] * most
    pushes = most  # known once the first drop is

    async def read(ws, seen: list[int]) -> None:
        while len(seen) < pushes:
            n = number(await ws.recv(decode=False))
            seen.append(n)
            arrived[n] += 1
            if arrived[n] == FAST:
                done[n].set()

    slow = await asyncio.to_thread(StalledClient, url, app.port)
    try:
        fast = [await connect(url, max_size=None) for _ in range(FAST)]
        for ws in fast:
            await subscribed(ws)
        seen: list[list[int]] = [[] for _ in fast]
        readers = [asyncio.ensure_future(read(ws, s)) for ws, s in zip(fast, seen, strict=True)]
        before, rounds, rss, steady_from = dropped_total(app), [], {}, None
        for n in range(most):
            if n == pushes:
                break
            started = time.monotonic()
            await asyncio.to_thread(publish, "predictions", market, [push(n)], 1)
            await asyncio.wait_for(done[n].wait(), ROUND_BOUND_S)
            rounds.append(time.monotonic() - started)
            if steady_from is None and n >= 250 and n % 10 == 0 and dropped_total(app) > before:
                steady_from, pushes = n + 1, n + 1 + STEADY
                rss[steady_from] = app.rss()
        assert steady_from is not None, f"no drop in {MOST_BEFORE_A_DROP} pushes: the outbox is not bounded"
        rss[pushes] = app.rss()
        await asyncio.gather(*readers)
        drops = dropped_total(app) - before
        late = []  # what the slow one gets once it reads at last
        while not late or late[-1].get("n") != pushes - 1:
            late.append(json.loads(await asyncio.to_thread(slow.recv)))
        for ws in fast:
            await ws.close()
    finally:
        slow.sock.close()
    return {"rounds": rounds, "seen": seen, "late": late, "drops": drops, "rss": rss, "steady_from": steady_from}


@pytest.mark.timeout(300)
def test_a_client_that_never_reads_neither_delays_the_others_nor_grows_the_server(market, tmp_path):
    app = AppProcess(tmp_path / "uvicorn.log")
    try:
        result = asyncio.run(scenario(app, market))
    finally:
        app.stop()
    steady_from = result["steady_from"]
    expected = list(range(steady_from + STEADY))
    assert all(seen == expected for seen in result["seen"]), "a fast subscriber missed a push or got one out of order"
    rounds = sorted(result["rounds"])  # each within ROUND_BOUND_S, or the scenario had failed
    # While its outbox overflows, the stalled client costs the others nothing: rounds as fast as while it still
    # took pushes (the first 200, well before its buffers filled), within the noise of a machine at load 8.
    taking, dropping = median(result["rounds"][:200]), median(result["rounds"][steady_from:])
    assert dropping < 4 * taking + 0.2, f"rounds took {dropping * 1000:.1f} ms, before {taking * 1000:.1f} ms"

    late = result["late"]
    notice = next(i for i, m in enumerate(late) if m["type"] == "dropped")
    sent, count, queued = late[:notice], late[notice]["count"], late[notice + 1 :]
    # Sent before it stalled (in the connection's buffers), then the gap, then exactly the outbox: the newest.
    assert [m["n"] for m in sent] == list(range(len(sent)))
    assert [m["n"] for m in queued] == expected[-OUTBOX_SIZE:]
    assert len(sent) + count + OUTBOX_SIZE == len(expected) and count > 0
    assert result["drops"] == count
    assert app.log.read_text().count("is not reading") == 1, "one warning for the connection, not one per drop"

    grown = result["rss"][len(expected)] - result["rss"][steady_from]
    assert grown < RSS_BOUND, f"server RSS grew by {grown / 2**20:.2f} MiB over the last {STEADY} pushes"
    print(
        f"rounds p50 {taking * 1000:.1f} ms then {dropping * 1000:.1f} ms, max {rounds[-1] * 1000:.1f} ms;"
        f" slow: {len(sent)} sent,"
        f" {count} dropped, {OUTBOX_SIZE} queued; RSS {grown / 2**10:+.0f} KiB over the last {STEADY}"
    )
