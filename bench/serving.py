"""Shared by the inference benchmarks: Django setup, a bench market with a model, uvicorn in a subprocess.

The benchmarks write to the configured database (or the embedded one under
CRYPTOPRED_DATA_DIR): run them with a scratch data dir, e.g. CRYPTOPRED_DATA_DIR=var/bench.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from testsupport import free_port  # noqa: E402  (re-exported to the other benchmarks)

__all__ = ["free_port"]
BINANCE_ETH = ROOT / "data" / "sample" / "binance_ETHUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"  # 22 trades/s
MARKET = "bench:ETH-USDT"
# uvicorn kills a worker that does not answer its supervisor's ping in time (5 s by default), with every connection
# it holds: a worker busy with a fan-out on an overloaded host is not hung (`manage.py up` allows the same).
WORKER_HEALTHCHECK_S = 30


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
    import django

    from core.config import prepare_environment

    prepare_environment()

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values)} p50={percentile(values, 50):.1f} p90={percentile(values, 90):.1f}"
        f" p99={percentile(values, 99):.1f} max={max(values):.1f} ms"
    )


def trade_lines(path: Path = BINANCE_ETH) -> tuple[str, list[str]]:
    with gzip.open(path, "rt") as f:
        header, *rows = f.readlines()
    return header, rows


def bench_market(history: Path, interval_s: int):
    """A fresh bench market holding the real trades of history, with an active model trained on them."""
    from django.test import override_settings

    from markets.models import Market
    from markets.names import get_or_create_market
    from modeling import registry
    from modeling.market_training import train_market
    from modeling.models import ModelArtifact
    from pipeline.entry import replay

    Market.objects.filter(exchange="bench").delete()
    market = get_or_create_market(MARKET)
    market.interval_s = interval_s
    market.save(update_fields=["interval_s"])
    replay(history, market)
    with override_settings(TRAIN_MIN_ROWS=50):
        artifact = train_market(market, window_s=24 * 3600)
    if artifact.status != ModelArtifact.Status.ACTIVE:
        registry.promote(artifact, "benchmark: serving cost, not accuracy")  # the gate may prefer persistence
    return market


def market_with_history(rows: int, interval_s: int):
    """bench_market over the first rows trades of the sample file, as recorded."""
    header, lines = trade_lines()
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.csv"
        history.write_text(header + "".join(lines[:rows]))
        return bench_market(history, interval_s)


@contextmanager
def uvicorn(app: str, port: int, app_dir: Path = ROOT, env: dict | None = None, workers: int = 1):
    """uvicorn serving app on 127.0.0.1:port in its own process, as `manage.py up` runs it.

    With workers > 1 (WEB_CONCURRENCY) the process yielded is uvicorn's supervisor: the workers are its children.
    """
    argv = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--ws", "core.wsframes:FrameTransportProtocol"]
    argv += ["--lifespan", "off", "--no-access-log"]
    argv += ["--ws-per-message-deflate", "false", "--log-level", "warning", "--workers", str(workers)]
    argv += ["--timeout-worker-healthcheck", str(WORKER_HEALTHCHECK_S)]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"uvicorn {app} did not start") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # thousands of websockets to close: the figures are in already
            for worker in psutil.Process(proc.pid).children(recursive=True):
                worker.kill()
            proc.kill()
            proc.wait(10)
