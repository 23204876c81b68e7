"""1,000 websocket subscribers on one market: publication -> every subscriber, p99 < 250 ms.

uvicorn serves the real application (one worker, as `manage.py up`); subscriber
connections live in separate client processes; this process publishes real
predictions through the pipeline's publish() and the configured channel layer.

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/fanout.py [--clients 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time

import psutil
from serving import MARKET, free_port, market_with_history, percentile, setup_django, summary, uvicorn


def subscribers(url: str, count: int, rounds: int, ready, results) -> None:
    """Client process: count connections subscribed to the market's predictions; reports arrival times."""
    from websockets.asyncio.client import connect

    async def one(arrivals: list) -> None:
        async with connect(url, open_timeout=60) as ws:
            await ws.send(json.dumps({"action": "subscribe", "channel": "predictions", "market": MARKET}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            ready.put(1)
            for _ in range(rounds):
                try:
                    raw = await asyncio.wait_for(ws.recv(), 30)
                except TimeoutError:
                    return
                arrivals.append((json.loads(raw)["made_at"], time.time()))

    async def run() -> None:
        arrivals: list = []
        await asyncio.gather(*(one(arrivals) for _ in range(count)))
        results.put(arrivals)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="websocket subscribers (default 1000)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rounds", type=int, default=20, help="predictions published (default 20)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between publications (default 2)")
    args = parser.parse_args()
    if args.clients < 1 or args.processes < 1 or not 1 <= args.rounds <= 200 or not 0 < args.gap <= 60:
        parser.error("--clients and --processes must be positive, --rounds in 1..200, --gap in (0, 60]")
    setup_django()
    from django.conf import settings

    from inference.api.serializers import PredictionSerializer
    from inference.broadcast import publish
    from inference.models import Prediction

    print("replaying real trades to have predictions ...", flush=True)
    market = market_with_history(6000, 1)
    payloads = [
        {"type": "prediction", **PredictionSerializer(p).data}
        for p in Prediction.objects.filter(market=market).order_by("-made_at")[: args.rounds]
    ]
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws/v1/stream/"
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    with uvicorn("cryptopred.asgi:application", port, env={"API_ANONYMOUS_READ": "true"}) as server:
        shares = [args.clients // args.processes + (i < args.clients % args.processes) for i in range(args.processes)]
        procs = [
            context.Process(target=subscribers, args=(url, n, len(payloads), ready, results), daemon=True)
            for n in shares
        ]
        for proc in procs:
            proc.start()
        for _ in range(args.clients):
            ready.get(timeout=120)
        print(f"{args.clients} subscribers connected; publishing {len(payloads)} predictions ({layer})", flush=True)
        published = {}
        cpu = psutil.Process(server.pid)
        cpu_before = sum(cpu.cpu_times()[:2])
        for payload in payloads:
            published[payload["made_at"]] = time.time()
            publish("predictions", market, [payload], 1)
            time.sleep(args.gap)
        arrivals = [item for _ in procs for item in results.get(timeout=120)]
        server_cpu = (sum(cpu.cpu_times()[:2]) - cpu_before) / len(payloads) * 1000
        for proc in procs:
            proc.join(10)
    latencies = [(arrived - published[made_at]) * 1000 for made_at, arrived in arrivals]
    expected = args.clients * len(payloads)
    print(f"publication -> subscriber: {summary(latencies)}; delivered {len(latencies)}/{expected}")
    # Independent of other load on the host: what one publication costs the web process.
    print(f"web process CPU per publication to {args.clients} subscribers: {server_cpu:.0f} ms")
    ok = len(latencies) == expected and percentile(latencies, 99) < 250
    print(f"target: all delivered, p99 < 250 ms: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
