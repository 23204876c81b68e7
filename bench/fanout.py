"""Websocket fan-out: publication -> every subscriber, p99 <= 250 ms; web CPU per delivery; memory per connection.

uvicorn serves the real application (--web-processes workers on one port, each joining the channel layer
as `manage.py up` does with WEB_CONCURRENCY); subscriber connections live in separate client processes;
this process publishes real predictions through the pipeline's publish() and the configured channel layer.
With --markets N the subscribers are spread evenly over N markets and each round publishes to all of them.

Then the same clients, rounds and payloads go to a minimal broadcast server in one process: the websockets
library's own server, which sends each publication with its broadcast() to the market's connections. The web
processes' CPU per delivery is reported next to that server's, as a ratio (the floor a Python server sets).

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py [--clients 1000] [--web-processes 1]
    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py --clients 10000 --web-processes 2
    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py --clients 1000 --markets 50
    ... bench/fanout.py --clients 10000 --record   (bench/results/fanout.json, see bench/record.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import time
from contextlib import contextmanager

import psutil
from record import record
from serving import free_port, market_with_history, percentile, setup_django, summary, uvicorn
from websockets.asyncio.server import broadcast, serve
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

OPENING = 100  # handshakes in flight per client process: a burst of thousands overflows the listen backlog
TARGET_US = 25.0  # web CPU per delivery
TARGET_RATIO = 1.5  # ... relative to the minimal broadcast server
LATENCY_BUDGET_MS = 250  # publication -> subscriber, for the projected subscribers per core


class Subscriber(asyncio.Protocol):
    """One connection subscribed to a market's predictions, driven by websockets' sans-I/O protocol.

    A fraction of the asyncio client's cost per message: the clients share the machine's cores with the
    server, and the figure wanted is the server's.
    """

    def __init__(self, url: str, market: str, arrivals: list):
        self.ws = ClientProtocol(parse_uri(url))
        self.market, self.arrivals = market, arrivals
        self.subscribed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                self.ws.send_text(
                    json.dumps({"action": "subscribe", "channel": "predictions", "market": self.market}).encode()
                )
            elif event.opcode is Opcode.TEXT:
                self.received(json.loads(event.data), now)
        self.flush()  # the subscription, pongs

    def received(self, message: dict, now: float) -> None:
        if message["type"] == "prediction":
            self.arrivals.append((message["market"], message["made_at"], now))
        elif not self.subscribed.done():
            self.subscribed.set_result(message["type"] == "subscribed")

    def flush(self) -> None:
        if data := self.ws.data_to_send():
            self.transport.write(b"".join(data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_result(False)


def subscribers(port: int, names: list[str], rounds: int, ready, results, done) -> None:
    """Client process: a connection per name, subscribed to that market; reports arrival times, then closes
    its connections once done is set (the server's work for a disconnect is not a delivery's)."""

    async def one(name: str, opening: asyncio.Semaphore, arrivals: list) -> asyncio.Transport:
        async with opening:
            loop = asyncio.get_running_loop()
            url = f"ws://127.0.0.1:{port}/ws/v1/stream/"
            transport, subscriber = await loop.create_connection(lambda: Subscriber(url, name, arrivals), port=port)
            assert await asyncio.wait_for(subscriber.subscribed, 120), f"subscribing to {name} failed"
        ready.put(1)
        return transport

    async def run() -> None:
        arrivals: list = []
        opening = asyncio.Semaphore(OPENING)
        transports = await asyncio.gather(*(one(name, opening, arrivals) for name in names))
        subscribed = time.process_time()
        expected, idle = len(names) * rounds, 0
        while len(arrivals) < expected and idle < 60:  # every push, or a minute without any
            seen = len(arrivals)
            await asyncio.sleep(1)
            idle = 0 if len(arrivals) > seen else idle + 1
        results.put((arrivals, time.process_time() - subscribed))
        await asyncio.to_thread(done.wait)
        for transport in transports:
            transport.close()

    asyncio.run(run())


def raise_open_files_limit() -> None:
    """Up to the hard limit, for this process and the ones it starts (each connection is a descriptor)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def minimal_server(port: int) -> None:
    """Server process: websockets' own server; a connection to /publish sends "market\\ntext" per publication,
    broadcast() to the connections subscribed to that market (each answered as the real stream answers)."""

    async def handler(ws) -> None:
        if ws.request.path == "/publish":
            async for message in ws:
                market, _, text = message.partition("\n")
                broadcast(subscribed.get(market, ()), text)
            return
        market = json.loads(await ws.recv())["market"]
        await ws.send(json.dumps({"type": "subscribed", "channel": "predictions", "market": market}))
        subscribed.setdefault(market, set()).add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribed[market].discard(ws)

    async def run() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**16):
            await asyncio.get_running_loop().create_future()

    subscribed: dict[str, set] = {}
    asyncio.run(run())


@contextmanager
def minimal(port: int, context):
    proc = context.Process(target=minimal_server, args=(port,), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while not any(c.laddr.port == port for c in psutil.Process(proc.pid).net_connections("tcp")):
            if time.monotonic() > deadline:
                raise SystemExit("the minimal broadcast server did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.join(10)


def web_processes(server: psutil.Process, workers: int) -> list[psutil.Process]:
    """The processes that serve: uvicorn's workers (spawned children), or uvicorn itself when it runs one."""
    if workers == 1:
        return [server]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        spawned = [p for p in server.children() if "spawn_main" in " ".join(p.cmdline())]
        if len(spawned) == workers:
            return spawned
        time.sleep(0.1)
    raise SystemExit(f"uvicorn did not start {workers} workers")


def cpu_seconds(processes: list[psutil.Process]) -> tuple[float, float]:
    """(user, system) seconds: the system part is mostly the kernel's TCP work, the same for any server."""
    times = [p.cpu_times() for p in processes]
    return sum(t.user for t in times), sum(t.system for t in times)


def rss(processes: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in processes)


def connections(process: psutil.Process, port: int) -> int:
    established = (c for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
    return sum(1 for c in established if c.laddr.port == port)


def bench_markets(count: int) -> list:
    """The bench market (real trades, a model) and count - 1 more that exist only to be subscribed to."""
    from markets.names import get_or_create_market

    first = market_with_history(6000, 1)
    return [first, *(get_or_create_market(f"bench:M{i:03d}-USDT") for i in range(1, count))]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def fan_out(port: int, web: list[psutil.Process], names: list[str], made_at: list, publish, args, context) -> dict:
    """Subscribe every name's connection to the server on port, publish len(made_at) rounds, gather arrivals."""
    ready, results, done = context.Queue(), context.Queue(), context.Event()
    idle_before = rss(web)
    procs = [
        context.Process(target=subscribers, args=(port, names[i :: args.processes], len(made_at), ready, results, done))
        for i in range(min(args.processes, len(names)))
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    for _ in names:
        ready.get(timeout=300)
    time.sleep(1)  # the last subscriptions' replies are out; the connections idle
    per_connection = (rss(web) - idle_before) / len(names)
    spread = [connections(p, port) for p in web]
    print(
        f"  {len(names)} subscribers connected in {time.monotonic() - started:.0f} s"
        f" ({' + '.join(map(str, spread))} over {len(web)} process(es)); load average {load()}",
        flush=True,
    )
    published = {}
    user, system = cpu_seconds(web)
    for when in made_at:
        for name in dict.fromkeys(names):
            published[name, when] = time.time()
            publish(name, when)
        time.sleep(args.gap)
    reports = [results.get(timeout=300) for _ in procs]  # once every push has arrived (or never will)
    user, system = (after - before for after, before in zip(cpu_seconds(web), (user, system), strict=True))
    web_cpu = user + system
    done.set()
    for proc in procs:
        proc.join(10)
    arrivals = [item for items, _ in reports for item in items]
    latencies = [(arrived - published[name, when]) * 1000 for name, when, arrived in arrivals]
    expected = len(names) * len(made_at)
    print(f"  publication -> subscriber: {summary(latencies)}; delivered {len(latencies)}/{expected}")
    client_cpu = sum(cpu for _, cpu in reports)
    print(
        f"  CPU per round: server {web_cpu / len(made_at) * 1000:.0f} ms ({web_cpu / expected * 1e6:.1f} µs per"
        f" delivery, {system / web_cpu:.0%} of it in the kernel), clients {client_cpu / len(made_at) * 1000:.0f} ms;"
        f" memory per idle connection {per_connection / 1024:.1f} KiB",
        flush=True,
    )
    return {
        "latencies": latencies,
        "expected": expected,
        "us": web_cpu / expected * 1e6,
        "kib": per_connection / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="websocket subscribers (default 1000)")
    parser.add_argument("--web-processes", type=int, default=1, help="uvicorn workers on the port (default 1)")
    parser.add_argument("--markets", type=int, default=1, help="markets the subscribers spread over (default 1)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rounds", type=int, default=20, help="publications per market (default 20)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between rounds (default 2)")
    parser.add_argument("--record", action="store_true", help="write the figures to bench/results/fanout.json")
    args = parser.parse_args()
    if min(args.clients, args.web_processes, args.markets, args.processes) < 1 or args.markets > args.clients:
        parser.error("--clients, --web-processes, --markets and --processes must be positive, markets <= clients")
    if not 1 <= args.rounds <= 200 or not 0 < args.gap <= 60:
        parser.error("--rounds in 1..200, --gap in (0, 60]")
    raise_open_files_limit()
    setup_django()
    from django.conf import settings

    from inference.api.serializers import PredictionSerializer
    from inference.broadcast import publish
    from inference.models import Prediction

    print(f"replaying real trades to have predictions ... (load average {load()})", flush=True)
    markets = {m.name: m for m in bench_markets(args.markets)}
    predictions = Prediction.objects.filter(market=next(iter(markets.values())), horizon=1).order_by("-made_at")
    payloads = {p["made_at"]: p for p in ({"type": "prediction", **PredictionSerializer(p).data} for p in predictions)}
    made_at = list(payloads)[: args.rounds]
    names = [list(markets)[i % len(markets)] for i in range(args.clients)]
    context = multiprocessing.get_context("spawn")
    env = {"API_ANONYMOUS_READ": "true", "WS_MAX_CONNECTIONS_PER_ADDRESS": str(args.clients)}  # all on loopback
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]

    def through_pipeline(name: str, when: str) -> None:
        publish("predictions", markets[name], [{**payloads[when], "market": name}], 1)

    print(f"cryptopred ({args.web_processes} uvicorn worker(s), {layer}), {len(made_at)} rounds:", flush=True)
    port = free_port()
    with uvicorn("cryptopred.asgi:application", port, env=env, workers=args.web_processes) as server:
        web = web_processes(psutil.Process(server.pid), args.web_processes)
        ours = fan_out(port, web, names, made_at, through_pipeline, args, context)

    from websockets.sync.client import connect

    print("minimal broadcast server (websockets' serve() and broadcast(), one process):", flush=True)
    port = free_port()
    with minimal(port, context) as server, connect(f"ws://127.0.0.1:{port}/publish") as publisher:

        def directly(name: str, when: str) -> None:
            publisher.send(f"{name}\n{json.dumps({**payloads[when], 'market': name}, separators=(',', ':'))}")

        floor = fan_out(port, [psutil.Process(server.pid)], names, made_at, directly, args, context)

    ratio = ours["us"] / floor["us"]
    per_core = LATENCY_BUDGET_MS * 1000 / ours["us"]
    p99 = percentile(ours["latencies"], 99)
    delivered = len(ours["latencies"]) == ours["expected"]
    print(
        f"web CPU per delivery: {ours['us']:.1f} µs, minimal server {floor['us']:.1f} µs: {ratio:.2f}x;"
        f" projected subscribers per core at {LATENCY_BUDGET_MS} ms: {per_core:,.0f}"
    )
    checks = {
        f"all delivered, p99 <= {LATENCY_BUDGET_MS} ms": delivered and p99 <= LATENCY_BUDGET_MS,
        f"<= {TARGET_US:g} µs per delivery": ours["us"] <= TARGET_US,
        f"<= {TARGET_RATIO}x the minimal server": ratio <= TARGET_RATIO,
    }
    verdicts = ", ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in checks.items())
    print(f"target: {verdicts} (load average {load()})")
    if args.record:
        where = f"{args.clients} subscribers, {args.markets} market(s), {args.web_processes} web process(es)"
        path = record(
            "fanout",
            [
                {
                    "name": f"web CPU per delivery, {where}",
                    "value": round(ours["us"], 1),
                    "unit": "µs",
                    "target": f"<= {TARGET_US:g}",
                    "met": ours["us"] <= TARGET_US,
                },
                {
                    "name": "minimal broadcast server (websockets broadcast()), CPU per delivery",
                    "value": round(floor["us"], 1),
                    "unit": "µs",
                    "target": None,
                    "met": None,
                },
                {
                    "name": "web CPU per delivery / minimal server's",
                    "value": round(ratio, 2),
                    "unit": "x (ratio)",
                    "target": f"<= {TARGET_RATIO}",
                    "met": ratio <= TARGET_RATIO,
                },
                {
                    "name": "publication -> subscriber p99",
                    "value": round(p99, 1),
                    "unit": "ms",
                    "target": f"<= {LATENCY_BUDGET_MS}",
                    "met": delivered and p99 <= LATENCY_BUDGET_MS,
                },
                {
                    "name": f"projected subscribers per core at {LATENCY_BUDGET_MS} ms",
                    "value": round(per_core),
                    "unit": "subscribers",
                    "target": None,
                    "met": None,
                },
                {
                    "name": "web processes' memory per idle subscribed connection",
                    "value": round(ours["kib"], 1),
                    "unit": "KiB",
                    "target": None,
                    "met": None,
                },
            ],
        )
        print(f"recorded: {path.relative_to(path.parents[2])}")


if __name__ == "__main__":
    main()
