"""Websocket fan-out: publication -> every subscriber, p99 <= 250 ms; memory per idle connection.

uvicorn serves the real application (--web-processes workers on one port, each joining the channel layer
as `manage.py up` does with WEB_CONCURRENCY); subscriber connections live in separate client processes;
this process publishes real predictions through the pipeline's publish() and the configured channel layer.
With --markets N the subscribers are spread evenly over N markets and each round publishes to all of them.

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py [--clients 1000] [--web-processes 1]
    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py --clients 10000 --web-processes 2
    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py --clients 1000 --markets 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import time

import psutil
from serving import free_port, market_with_history, percentile, setup_django, summary, uvicorn
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

OPENING = 100  # handshakes in flight per client process: a burst of thousands overflows the listen backlog


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


def subscribers(port: int, names: list[str], rounds: int, ready, results) -> None:
    """Client process: a connection per name, subscribed to that market; reports arrival times."""

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
        for transport in transports:
            transport.close()
        results.put((arrivals, time.process_time() - subscribed))

    asyncio.run(run())


def raise_open_files_limit() -> None:
    """Up to the hard limit, for this process and the ones it starts (each connection is a descriptor)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="websocket subscribers (default 1000)")
    parser.add_argument("--web-processes", type=int, default=1, help="uvicorn workers on the port (default 1)")
    parser.add_argument("--markets", type=int, default=1, help="markets the subscribers spread over (default 1)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rounds", type=int, default=20, help="publications per market (default 20)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between rounds (default 2)")
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
    markets = bench_markets(args.markets)
    predictions = Prediction.objects.filter(market=markets[0], horizon=1).order_by("-made_at")[: args.rounds]
    payloads = [{"type": "prediction", **PredictionSerializer(p).data} for p in predictions]
    names = [markets[i % len(markets)].name for i in range(args.clients)]
    port = free_port()
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    env = {"API_ANONYMOUS_READ": "true", "WS_MAX_CONNECTIONS_PER_ADDRESS": str(args.clients)}  # all on loopback
    with uvicorn("cryptopred.asgi:application", port, env=env, workers=args.web_processes) as server:
        web = web_processes(psutil.Process(server.pid), args.web_processes)
        idle_before = rss(web)
        procs = [
            context.Process(target=subscribers, args=(port, names[i :: args.processes], len(payloads), ready, results))
            for i in range(min(args.processes, args.clients))
        ]
        started = time.monotonic()
        for proc in procs:
            proc.start()
        for _ in range(args.clients):
            ready.get(timeout=300)
        time.sleep(1)  # the last subscriptions' replies are out; the connections idle
        per_connection = (rss(web) - idle_before) / args.clients
        spread = [connections(p, port) for p in web]
        print(
            f"{args.clients} subscribers of {len(markets)} market(s) connected in {time.monotonic() - started:.0f} s"
            f" ({' + '.join(map(str, spread))} over {len(web)} web process(es)); publishing {len(payloads)} rounds"
            f" ({layer}); load average {load()}",
            flush=True,
        )
        published = {}
        web_cpu = cpu_seconds(web)
        for payload in payloads:
            for market in markets:
                published[market.name, payload["made_at"]] = time.time()
                publish("predictions", market, [{**payload, "market": market.name}], 1)
            time.sleep(args.gap)
        reports = [results.get(timeout=300) for _ in procs]  # once every push has arrived (or never will)
        web_cpu = cpu_seconds(web) - web_cpu
        arrivals = [item for items, _ in reports for item in items]
        client_cpu = sum(cpu for _, cpu in reports)
        for proc in procs:
            proc.join(10)
    latencies = [(arrived - published[name, made_at]) * 1000 for name, made_at, arrived in arrivals]
    expected = args.clients * len(payloads)
    rounds = len(payloads)
    print(f"publication -> subscriber: {summary(latencies)}; delivered {len(latencies)}/{expected}")
    # Independent of other load on the host: what a round costs the web processes (and the clients, same host).
    print(
        f"CPU per round ({len(markets)} publication(s) to {args.clients} subscribers): web processes"
        f" {web_cpu / rounds * 1000:.0f} ms ({web_cpu / expected * 1e6:.0f} µs per delivery),"
        f" clients {client_cpu / rounds * 1000:.0f} ms"
    )
    print(f"web processes' memory per idle subscribed connection: {per_connection / 1024:.1f} KiB")
    ok = len(latencies) == expected and percentile(latencies, 99) <= 250
    print(f"target: all delivered, p99 <= 250 ms: {'PASS' if ok else 'FAIL'} (load average {load()})")


if __name__ == "__main__":
    main()
