"""`make up`'s /metrics: one scrape of the web shows every process kind of the system."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from testsupport import free_port
from testsupport.scrape import parse, value
from testsupport.up import health_until, start_up

pytestmark = pytest.mark.system  # a whole `manage.py up`: the slow tier

KINDS = ("web", "default", "streams", "beat")


def test_one_scrape_of_make_up_covers_every_process_kind(tmp_path):
    port = free_port()
    (tmp_path / "metrics" / "stale").mkdir(parents=True)
    (tmp_path / "metrics" / "stale" / "counter_1.db").write_bytes(b"left by an earlier run")
    up = start_up(tmp_path, port)
    try:
        status, body = health_until(up, port, lambda status, _: status == 200)
        assert status == 200, body
        assert not (tmp_path / "metrics" / "stale" / "counter_1.db").exists()  # wiped at start
        deadline = time.monotonic() + 90
        samples: dict = {}
        while time.monotonic() < deadline:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert response.status_code == 200
            samples = parse(response.text)
            kinds = {k: value(samples, "cryptopred_processes", kind=k) for k in KINDS}
            # The default worker runs the drift check, the streams worker the markets' streams (retrying
            # without network here), beat ticks.
            ran = value(samples, "cryptopred_celery_tasks_total", task="pipeline.tasks.ensure_streams", state="SUCCESS")
            if all(kinds.values()) and value(samples, "cryptopred_beat_ticks_total") and ran:
                break
            time.sleep(1)
        assert all(kinds.values()), kinds
        assert kinds["default"] >= 2  # the prefork worker and its pool processes (CELERY_CONCURRENCY 2)
        assert value(samples, "cryptopred_beat_ticks_total") >= 1
        assert value(samples, "cryptopred_beat_last_tick_timestamp_seconds") > time.time() - 60
        assert value(samples, "cryptopred_market_enabled", market="kraken:ETH-USD") == 1
        assert value(samples, "cryptopred_celery_queue_length", queue="streams") is not None
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.communicate(timeout=60)
            except Exception:
                os.killpg(up.pid, signal.SIGKILL)
