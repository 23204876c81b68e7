"""Prometheus metrics of every process, in prometheus-client's multiprocess mode.

Each process writes its counters and histograms to memory-mapped files under
PROMETHEUS_MULTIPROC_DIR (core.config.prepare_environment sets it to
METRICS_DIR/<host>, one directory per host, so that containers sharing a
volume never share a file name); the web's /metrics merges every file under
METRICS_DIR (monitoring.views), so one scrape shows the web, the workers, the
streams worker and beat. `make up` wipes METRICS_DIR when it starts.

The metric objects live here, with no Django import, so that the apps low in
the dependency order (markets) can count without importing anything above them.
An increment costs about a microsecond: a label lookup and a write into the map.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re

from core.config import metrics_dir, metrics_root
from core.embedded import pid_alive

_forgotten_for: int | None = None  # the pid whose stale files are gone (its own may be open since)


def forget_stale_live_gauges() -> None:
    """Remove live-gauge files named with this process's pid: an earlier process's that had the same pid.

    prometheus-client reads a file it opens, so a restarted container (pids start over) would carry
    its predecessor's websocket connections and process count on. Done once per pid, before the
    process sets a live gauge: at import here, and in each new Celery pool process (a solo or
    threads pool signals it in the worker's own process, whose files are open by then: left alone).
    """
    global _forgotten_for
    if _forgotten_for == os.getpid():
        return
    _forgotten_for = os.getpid()
    for path in glob.glob(str(metrics_dir() / f"gauge_live*_{os.getpid()}.db")):
        os.remove(path)


forget_stale_live_gauges()  # before any metric value exists: prometheus-client opens its files in metrics_dir()

from prometheus_client import Counter, Gauge, Histogram, values  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

# Whatever imported prometheus-client first, values are shared through the files.
if not getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue()

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# markets: ingest, book, streams
TRADES = Counter("cryptopred_trades_ingested", "Trades stored (first time seen)", ["market"])
DUPLICATES = Counter("cryptopred_trades_duplicate", "Trades received again and not stored", ["market"])
CANDLES = Counter("cryptopred_candles_finalized", "Candles finalized (including empty windows)", ["market"])
LATE_TRADES = Counter(
    "cryptopred_late_trades", "Trades that arrived after their window closed (amendments)", ["market"]
)
AMENDED_CANDLES = Counter("cryptopred_candles_amended", "Final candles changed by late trades", ["market"])
BOOK_UPDATES = Counter("cryptopred_book_updates", "Order-book changes in stored book windows", ["market"])
BOOK_WINDOWS = Counter("cryptopred_book_windows_stored", "Book windows upserted", ["market"])
BOOK_CHECKSUM_FAILURES = Counter("cryptopred_book_checksum_failures", "Book checksums that did not match", ["market"])
BOOK_RESYNCS = Counter("cryptopred_book_resyncs", "Books fetched again from scratch", ["market"])
BOOK_RECEIVE_STAMPED = Counter(
    "cryptopred_book_receive_stamped",
    "Book messages without an exchange time (e.g. a Kraken snapshot), stamped with their receive time",
    ["market"],
)
FEED_LAG = Histogram(
    "cryptopred_feed_lag_seconds",
    "Exchange trade time to received here (live feed)",
    ["market"],
    buckets=LATENCY_BUCKETS,
)
STREAM_CONNECTS = Counter("cryptopred_stream_connects", "Websocket connections opened to the exchange", ["market"])
STREAM_RECONNECTS = Counter("cryptopred_stream_reconnects", "Stream connection failures, each retried", ["market"])
STREAM_MALFORMED = Counter(
    "cryptopred_stream_frames_malformed", "Frames from the exchange that could not be used (logged)", ["market"]
)
STREAM_UNUSED = Counter(
    "cryptopred_stream_frames_unused",
    "Well-formed frames of a documented channel the stream does not consume, ignored",
    ["market", "channel"],
)

# pipeline step
STEP_RUNS = Counter(
    "cryptopred_step_runs", "Pipeline step attempts by outcome (ok, failed, busy)", ["market", "outcome"]
)
STEP_SECONDS = Histogram(
    "cryptopred_step_duration_seconds", "Duration of a successful pipeline step", ["market"], buckets=LATENCY_BUCKETS
)
STEP_COUNTS = {
    name: Counter(f"cryptopred_{metric}", text, ["market"])
    for name, metric, text in (
        ("features", "features_computed", "Feature rows computed by the step"),
        ("predictions", "predictions", "Predictions made and stored"),
        ("skipped", "predictions_skipped", "Live windows skipped: their target time had passed"),
        ("refreshed", "candles_refreshed", "Amended candles whose features and scores were refreshed"),
    )
}
# Counted where the realized close is stored (inference.predictions.score): StepStats.scored misses the
# predictions scored right after predicting (a replay's, whose target candle already exists).
SCORED = Counter("cryptopred_predictions_scored", "Predictions scored (their target candle closed)", ["market"])
RESCORED = Counter("cryptopred_predictions_rescored", "Scored predictions rescored after late trades", ["market"])
PREDICTION_DELAY = Histogram(
    "cryptopred_prediction_delay_seconds",
    "Live window end (candle close) to its prediction stored, grace included",
    ["market"],
    buckets=LATENCY_BUCKETS,
)
PREDICTION_COMPUTE = Histogram(
    "cryptopred_prediction_compute_seconds", "Model compute per prediction", ["market"], buckets=FAST_BUCKETS
)
WS_PUBLISH_DELAY = Histogram(
    "cryptopred_ws_publish_delay_seconds",
    "Live window end to its push handed to the websocket channel layer",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
SHADOW_PREDICTIONS = Counter(
    "cryptopred_shadow_predictions", "Challenger predictions stored (never served)", ["market"]
)
SHADOW_FAILURES = Counter("cryptopred_shadow_failures", "Challenger predictions that raised", ["market"])

# web: API and websocket
HTTP_REQUESTS = Counter("cryptopred_http_requests", "HTTP requests by handler and status", ["handler", "status"])
API_THROTTLED = Counter("cryptopred_api_throttled", "API requests refused by the rate limit", ["client"])
WS_CONNECTIONS = Gauge("cryptopred_ws_connections", "Open websocket connections", multiprocess_mode="livesum")
WS_SUBSCRIPTIONS = Gauge(
    "cryptopred_ws_subscriptions", "Websocket subscriptions", ["channel"], multiprocess_mode="livesum"
)
WS_DROPPED = Counter(
    "cryptopred_ws_pushes_dropped", "Pushes dropped (the oldest queued) for websocket clients that do not keep up"
)

# processes and Celery
PROCESSES = Gauge(
    "cryptopred_processes",
    "Running processes of the system by kind (web, beat, a worker's queue; a prefork worker's pool processes too)",
    ["kind"],
    multiprocess_mode="livesum",
)
BEAT_TICKS = Counter("cryptopred_beat_ticks", "Ticks of the beat scheduler")
CELERY_TASKS = Counter("cryptopred_celery_tasks", "Celery tasks finished, by task and state", ["task", "state"])

# modeling
TRAINING_RUNS = Counter(
    "cryptopred_training_runs", "Training runs by outcome (active, rejected, skipped, failed)", ["market", "outcome"]
)


def step_done(market: str, counts: dict[str, int], seconds: float) -> None:
    """A successful pipeline step: its StepStats and duration."""
    STEP_RUNS.labels(market, "ok").inc()
    STEP_SECONDS.labels(market).observe(seconds)
    for name, value in counts.items():
        if value and name in STEP_COUNTS:
            STEP_COUNTS[name].labels(market).inc(value)


LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


class AllProcesses:
    """Collector of every process's metric files under METRICS_DIR (all hosts), merged.

    Live gauges (websocket connections) of processes of this host that have
    exited are dropped first; counters and histograms of exited processes stay
    in the totals, as Prometheus expects of a counter.
    """

    def collect(self):
        own = metrics_dir()
        for path in glob.glob(str(own / "gauge_live*.db")):
            match = LIVE_GAUGE_FILE.search(path)
            if match and not pid_alive(int(match[1])):
                mark_process_dead(int(match[1]), str(own))
        files = glob.glob(str(metrics_root() / "*" / "*.db"))
        return MultiProcessCollector.merge(files, accumulate=True)


class DeferredCounts:
    """Increments of an event loop's hottest path, written to the counter a second later in one go.

    A counter increment in multiprocess mode costs a few microseconds (a lock and a
    write into the map): a few per cent of a latest-prediction request answered
    from Redis. Here a request costs a dict update; the event loop writes the sums
    within DELAY_S, so a scrape sees them at most a second late.
    """

    DELAY_S = 1.0

    def __init__(self, counter: Counter):
        self.counter = counter
        self.pending: dict[tuple[str, ...], int] = {}
        self.scheduled_on: asyncio.AbstractEventLoop | None = None  # the loop that will flush

    def inc(self, *labels: str) -> None:
        self.pending[labels] = self.pending.get(labels, 0) + 1
        loop = asyncio.get_running_loop()
        # Schedule on this loop unless it already will flush (a loop that ended never would).
        if self.scheduled_on is not loop:
            self.scheduled_on = loop
            loop.call_later(self.DELAY_S, self.flush)

    def flush(self) -> None:
        pending, self.pending, self.scheduled_on = self.pending, {}, None
        for labels, n in pending.items():
            self.counter.labels(*labels).inc(n)


def count(counter: Counter, market: str, n: int) -> None:
    if n:
        counter.labels(market).inc(n)


def ingested(market: str, stored: int, duplicates: int) -> None:
    count(TRADES, market, stored)
    count(DUPLICATES, market, duplicates)


def predicted(market: str, predictions: list, now: float | None) -> None:
    """Predictions just stored: model compute of each, and with now (live: the clock) the delay since window end."""
    compute = PREDICTION_COMPUTE.labels(market)
    delay = PREDICTION_DELAY.labels(market) if now is not None else None
    for p in predictions:
        compute.observe(p.latency_ms / 1000)
        if delay is not None:
            delay.observe(max(0.0, now - p.made_at.timestamp()))


BACKLOG_S = 300.0  # a pushed item whose window ended longer ago is a backlog (replay, backfill), not live delay


def published(channel: str, payloads: list[dict], now: float) -> None:
    """Pushes handed to the channel layer: the newest one's delay since its window ended, when live."""
    from datetime import datetime

    end = payloads[-1].get("made_at") or payloads[-1].get("end") if payloads else None
    if not isinstance(end, str):
        return
    try:
        delay = now - datetime.fromisoformat(end).timestamp()
    except ValueError:
        return
    if 0 <= delay <= BACKLOG_S:
        WS_PUBLISH_DELAY.labels(channel).observe(delay)
