"""Cost of the Prometheus instrumentation, per call, in multiprocess mode (as every process runs it).

Usage: python bench/metrics.py

A noise-free complement to running bench/ingest.py and bench/api.py with and
without the instrumentation (on a busy shared machine their run-to-run spread is
larger than the overhead): it times each kind of call the hot paths make and
multiplies by how often they make it.
  - ingest (bench/ingest.py, 1,001,535 trades in 4,550 windows): per transaction
    a few counter increments after commit; per step run the StepStats counters
    and a duration; per prediction a compute-time observation; per scoring one
    increment. Counted with the real replay below.
  - API (bench/api.py, a read answered by the read cache): one DeferredCounts.inc
    per request (a dict update; the event loop writes the sums once a second).
The ingest estimate leaves out the step's one indexed query for challengers per
run (8 runs in bench/ingest.py), well under a millisecond each.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cryptopred-metrics-")


def per_call(func, n: int = 200_000) -> float:
    """Seconds per call of func (best of three)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            func()
        best = min(best, time.perf_counter() - started)
    return best / n


async def deferred_per_call() -> float:
    from core import prometheus

    counts = prometheus.DeferredCounts(prometheus.HTTP_REQUESTS)
    seconds = per_call(lambda: counts.inc("api:latest-prediction", "200"))
    counts.flush()
    return seconds


def main() -> None:
    from core import prometheus

    counter = prometheus.TRADES.labels("bench:ETH-USDT")
    histogram = prometheus.PREDICTION_COMPUTE.labels("bench:ETH-USDT")
    costs = {
        "counter .labels(m).inc(n)": per_call(lambda: prometheus.TRADES.labels("bench:ETH-USDT").inc(3)),
        "bound counter .inc()": per_call(counter.inc),
        "histogram .labels(m).observe(x)": per_call(
            lambda: prometheus.PREDICTION_COMPUTE.labels("bench:ETH-USDT").observe(0.0004)
        ),
        "bound histogram .observe(x)": per_call(lambda: histogram.observe(0.0004)),
        "HTTP request counter, direct": per_call(
            lambda: prometheus.HTTP_REQUESTS.labels("api:latest-prediction", "200").inc()
        ),
        "read cache DeferredCounts.inc": asyncio.run(deferred_per_call()),
    }
    for name, seconds in costs.items():
        print(f"{name:36s} {seconds * 1e6:6.2f} µs")
    # bench/ingest.py: 1,001,535 trades, 7 transactions of 150,000, 4,550 windows; each transaction's step
    # run predicts and scores its windows. Calls: 3 counters per transaction (trades, duplicates, candles),
    # per step run 1 counter + 1 histogram + up to 4 StepStats counters, per prediction 1 histogram,
    # per scoring call 1 counter.
    transactions, windows = 8, 4550
    ingest_s = (
        transactions * (3 * costs["counter .labels(m).inc(n)"])
        + transactions * (5 * costs["counter .labels(m).inc(n)"] + costs["histogram .labels(m).observe(x)"])
        + windows * costs["bound histogram .observe(x)"]
        + 2 * transactions * costs["counter .labels(m).inc(n)"]
    )
    print(
        f"ingest: {ingest_s * 1e3:.2f} ms per 1,001,535 trades "
        f"= {ingest_s / 5.0 * 100:.3f} % of a 5.0 s replay (README: ~200,000 trades/s)"
    )
    request = costs["read cache DeferredCounts.inc"]
    print(
        f"api: {request * 1e6:.2f} µs per request = {request * 8450 * 100:.2f} % of a core at 8,450 req/s "
        f"(README's figure; one request = {1e6 / 8450:.0f} µs of the web process)"
    )


if __name__ == "__main__":
    main()
