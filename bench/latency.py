"""Window end -> prediction received by a websocket client, on a live-like feed of real trades.

Real Binance ETH/USDT trades, shifted to the present, are fed at their own pace to
the markets Ingestor, which closes windows on the clock (wall time minus the grace:
adaptive, i.e. the feed's lag quantile plus a margin, or CANDLE_GRACE_MODE=fixed)
as the stream worker does, and wakes the market's pipeline step thread after each
commit (features, the active model, inference), as a live stream does. The
prediction reaches a websocket client through a separate uvicorn process over the
Redis channel layer. Targets: window end -> client p99 <= 100 ms with the adaptive grace
(the stand-in feed has no lag), p99 <= CANDLE_GRACE_S + 50 ms with a fixed one; the
pipeline step p50 <= 20 ms (three horizons).

With --book [RATE], the same loop also streams a busy order book, as a live
Kraken stream would in the same process: RATE (default 500) v2 `book` updates
per second, made from the real Bitstamp L2 sample (each with its checksum),
each parsed by the Kraken source and applied by the market's BookIngestor
(book, checksum verified, book windows), whose windows are stored in the
candles' transaction before the step is woken.

--record writes the figures to bench/results/latency.json (latency-book.json with --book).

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/latency.py [--interval 1] [--windows 120] [--book [RATE]]
        [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from record import record
from serving import MARKET, bench_market, free_port, percentile, setup_django, summary, trade_lines, uvicorn

STEP_P50_MS = 20.0


def shifted_csv(header: str, rows: list[str], offset: timedelta) -> str:
    out = [header]
    for row in rows:
        ts, rest = row.split(",", 1)
        moved = datetime.fromisoformat(ts) + offset
        out.append(moved.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "," + rest)
    return "".join(out)


def listen(url: str, received: list, subscribed: threading.Event, stop: threading.Event) -> None:
    """Websocket client thread: records (window end, arrival) of every prediction pushed."""
    from websockets.asyncio.client import connect

    async def run():
        async with connect(url) as ws:
            await ws.send(json.dumps({"action": "subscribe", "channel": "predictions", "market": MARKET, "horizon": 1}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            subscribed.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                arrived = time.time()
                message = json.loads(raw)
                if message.get("type") == "prediction":
                    received.append((datetime.fromisoformat(message["made_at"]).timestamp(), arrived))

    asyncio.run(run())


class BusyBook:
    """Kraken v2 book updates at a steady rate through the live path: source.parse, then BookIngestor.apply."""

    PLACEHOLDER = "@TS@"

    def __init__(self, market, rate: float):
        from django.conf import settings

        from markets.streams.livebook import BookIngestor
        from markets.streams.sources.base import load_frame
        from markets.streams.sources.kraken import KrakenSource
        from testsupport.fake_kraken_book import book_loop, instrument_snapshot

        self.load_frame = load_frame
        self.source = KrakenSource(market)
        self.source.parse(load_frame(instrument_snapshot(market.symbol)))  # the precision, as a stream learns it
        self.ingestor = BookIngestor(market, settings.BOOK_DEPTH, self.source.book_checksum)
        self.snapshot, self.updates = book_loop(market.symbol, settings.BOOK_DEPTH, self.PLACEHOLDER)
        self.rate = rate
        self.sent = 0
        self.seconds = 0.0  # in parse and apply

    def feed(self, elapsed: float) -> None:
        """Send the messages due by elapsed seconds of feeding (at most 100 at once, as frames buffer)."""
        due = min(int(elapsed * self.rate) + 1, self.sent + 100)
        while self.sent < due:
            template = self.snapshot if self.sent == 0 else self.updates[(self.sent - 1) % len(self.updates)]
            raw = template.replace(self.PLACEHOLDER, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            started = time.perf_counter()
            self.ingestor.apply(self.source.parse(self.load_frame(raw)), time.monotonic())
            self.seconds += time.perf_counter() - started
            self.sent += 1

    def report(self) -> bool:
        stats = self.ingestor.stats
        per_message = self.seconds / max(1, stats.messages) * 1e6
        print(
            f"book: {stats.messages} messages ({stats.messages / self.seconds:,.0f}/s of parse and apply possible),"
            f" {per_message:.1f} us each (parse, apply, checksum, windows), {stats.windows} windows stored,"
            f" checksum failures {stats.checksum_failures}"
        )
        return stats.checksum_failures == 0 and stats.windows > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=int, default=1, help="candle interval in seconds (default 1)")
    parser.add_argument("--windows", type=int, default=120, help="live windows to measure (default 120)")
    parser.add_argument("--history", type=int, default=6000, help="trades replayed first to train on")
    parser.add_argument(
        "--book",
        type=float,
        nargs="?",
        const=500.0,
        default=0.0,
        metavar="RATE",
        help="also stream a busy Kraken v2 book: RATE updates per second (default 500)",
    )
    parser.add_argument("--record", action="store_true", help="write the figures to bench/results/")
    args = parser.parse_args()
    if args.interval < 1 or args.windows < 1 or args.history < 1000 or args.book < 0:
        parser.error("--interval and --windows must be positive, --history at least 1000, --book not negative")
    setup_django()
    from django.conf import settings

    from inference.models import Prediction
    from markets.models import Market
    from markets.streams.grace import Grace
    from markets.trades.file import read_trades
    from markets.trades.ingest import Ingestor
    from pipeline.runner import StepThread

    header, rows = trade_lines()
    if args.history >= len(rows):
        parser.error(f"--history must be below {len(rows)}")
    interval = args.interval
    first_live = datetime.fromisoformat(rows[args.history].split(",", 1)[0])
    # Shift by whole windows so the data keeps its window structure; live data starts 2 s from now.
    shift_s = (time.time() + 2 - first_live.timestamp()) // interval * interval
    offset = timedelta(seconds=shift_s)

    def window(row: str) -> int:
        return int(datetime.fromisoformat(row.split(",", 1)[0]).timestamp() + shift_s) // interval

    # Live trades start in a window after the history's last one (which the history replay finalized).
    live = [r for r in rows[args.history :] if window(r) > window(rows[args.history - 1])]

    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.csv"
        history.write_text(shifted_csv(header, rows[: args.history], offset))
        print(f"replaying {args.history} trades of history and training a model ...", flush=True)
        market = bench_market(history, interval)
        feed = Path(tmp) / "live.csv"
        feed.write_text(shifted_csv(header, live, timedelta(0)))
        ticks = [dataclasses.replace(t, ts=t.ts + offset) for batch in read_trades(feed) for t in batch]

    port = free_port()
    received: list[tuple[float, float]] = []
    subscribed, stop = threading.Event(), threading.Event()
    with uvicorn("cryptopred.asgi:application", port, env={"API_ANONYMOUS_READ": "true"}):
        client = threading.Thread(
            target=listen, args=(f"ws://127.0.0.1:{port}/ws/v1/stream/", received, subscribed, stop), daemon=True
        )
        client.start()
        if not subscribed.wait(10):
            raise SystemExit("websocket client could not subscribe")
        # Every window is predicted (as a paced replay does): with 1-s windows and a 2-s grace each window's
        # target time has passed when it closes, so the live policy would skip them all as stale.
        step = StepThread(market)  # as a live stream: a window whose target time passed is skipped
        pipeline: list[float] = []
        run = step.step.run

        def timed_run():
            started = time.perf_counter()
            stats = run()
            if stats.predictions:
                pipeline.append((time.perf_counter() - started) * 1000)
            return stats

        step.step.run = timed_run
        step.start()
        ingestor = Ingestor(market, on_commit=step.wake)
        book = BusyBook(market, args.book) if args.book else None
        grace = Grace()
        late_before = Market.objects.get(pk=market.pk).late_trades
        # Training took a while: move the live trades (by whole windows) to start now, so the feed has
        # no backlog that would look like feed lag.
        behind = max(0, math.ceil((time.time() + 1 - ticks[0].ts.timestamp()) / interval)) * interval
        ticks = [dataclasses.replace(t, ts=t.ts + timedelta(seconds=behind)) for t in ticks]
        end = ticks[0].ts.timestamp() + args.windows * interval
        mode = settings.CANDLE_GRACE_MODE
        print(f"feeding {args.windows} live windows of {interval}s ({mode} grace) ...", flush=True)
        if book is not None:
            print(f"... and {args.book:.0f} book updates per second", flush=True)
        i = 0
        feed_start = time.time()  # the history and training took a while: earlier windows close late
        while time.time() - grace.seconds() < end + interval and i < len(ticks):
            now = time.time()
            due = []
            while i < len(ticks) and ticks[i].ts.timestamp() <= now and ticks[i].ts.timestamp() < end:
                due.append(ticks[i])
                i += 1
            if due:
                grace.observe(due, now)
                ingestor.ingest(due)
            if book is not None:
                book.feed(now - feed_start)
            ingestor.finalize_due(now - grace.seconds(), book and book.ingestor)  # as the stream worker does
            time.sleep(0.002)
        time.sleep(1)
        step.stop()
        stop.set()
        client.join(5)

    latencies = [(arrived - window_end) * 1000 for window_end, arrived in received if window_end > feed_start]
    compute = list(
        Prediction.objects.filter(market=market, made_at__gt=ticks[0].ts).values_list("latency_ms", flat=True)
    )
    fed = i
    late = Market.objects.get(pk=market.pk).late_trades - late_before
    target = 100.0 if mode == "adaptive" else settings.CANDLE_GRACE_S * 1000 + 50
    p99 = percentile(latencies, 99) if latencies else float("inf")
    print(f"predictions received for {len(latencies)} of {args.windows} live windows (the rest were stale)")
    if not latencies:
        raise SystemExit("FAIL: no window was predicted before its target time (grace longer than the horizon?)")
    print(f"window end -> websocket client: {summary(latencies)}")
    print(f"pipeline step (features -> prediction published), per run: {summary(pipeline)}")
    print(f"model compute (Prediction.latency_ms): {summary(compute)}")
    print(f"grace at the end: {grace.seconds() * 1000:.1f} ms; late trades {late} of {fed} ({late / max(fed, 1):.2%})")
    step_p50 = percentile(pipeline, 50) if pipeline else float("inf")
    ok = p99 <= target
    if book is not None:
        ok = book.report() and ok
    print(f"target p99 <= {target:.0f} ms: {'PASS' if ok else 'FAIL'}")
    print(f"target pipeline step p50 <= {STEP_P50_MS:.0f} ms: {'PASS' if step_p50 <= STEP_P50_MS else 'FAIL'}")
    if args.record:
        figures = [
            ms("window end -> websocket client, p50", percentile(latencies, 50)),
            ms("window end -> websocket client, p99", p99, target),
            ms("pipeline step, p50", step_p50, STEP_P50_MS),
            ms("pipeline step, p99", percentile(pipeline, 99)),
            ms("model compute, p50", percentile(compute, 50)),
        ]
        print(f"recorded in {record('latency-book' if book is not None else 'latency', figures)}")


def ms(name: str, value: float, most: float | None = None) -> dict:
    """A figure in ms, with its target (at most `most`) if it has one."""
    target = None if most is None else f"<= {most:g}"
    return {
        "name": name,
        "value": round(value, 1),
        "unit": "ms",
        "target": target,
        "met": None if most is None else value <= most,
    }


if __name__ == "__main__":
    main()
