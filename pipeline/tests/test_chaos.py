"""Faults against real processes (make chaos): streams workers killed -9 mid-stream, Redis killed under a replay."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from celery import current_app
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from core import embedded
from core.lease import held, holder
from core.redis_client import get_redis
from features.models import FeatureRow
from inference.models import Prediction
from markets.models import Candle, Market, Trade
from markets.names import get_or_create_market, stream_key
from pipeline.tasks import ensure_streams, home_queue
from testsupport.data import GEMINI, KRAKEN_BTCUSDT, first_hours, read_rows, reference_candles
from testsupport.fake_kraken import FakeKraken

pytestmark = [pytest.mark.system, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 3.0
BEAT_S = 1.0
SLACK_S = 10.0  # a task to start and connect on a loaded machine
PAIRS = {"BTC/USDT": "XBTUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}  # the same real trades under each


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def suite_database_url() -> str:
    """The suite's database (pytest-django's test database) as a URL for another process."""
    return urlsplit(settings.DATABASE_URL)._replace(path=f"/{connection.settings_dict['NAME']}").geturl()


def streams_worker(fake: FakeKraken, name: str, streams: int = 2, queue: str | None = None) -> subprocess.Popen:
    """A real streams worker process on the suite's database and Redis, fed by the stand-in Kraken."""
    env = {
        **os.environ,
        "DATABASE_URL": suite_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "KRAKEN_WS_URL": fake.ws_url,
        "KRAKEN_REST_URL": fake.rest_url,
        "STREAM_LEASE_S": str(LEASE_S),
        "BACKFILL_HOURS": "96",
    }
    argv = [sys.executable, "-m", "celery", "-A", "cryptopred", "worker", "-Q", queue or settings.STREAMS_QUEUE]
    argv += [
        "--pool",
        "threads",
        "-c",
        str(streams),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "WARNING",
    ]
    return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)


def stop(*procs: subprocess.Popen | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def featured(market: Market) -> bool:
    """Whether every final candle of the market has its feature row (its step has caught up)."""
    finals = Candle.objects.filter(market=market, final=True).values_list("start", flat=True)
    return not finals.exclude(start__in=FeatureRow.objects.filter(market=market).values("start")).exists()


def assert_stored_exactly(market: Market, fake: FakeKraken) -> None:
    """Every trade exactly once, candles exact, every final window has its feature row."""
    stored = list(Trade.objects.filter(market=market).order_by("trade_id").values_list("trade_id", flat=True))
    assert stored == [int(r["trade_id"]) for r in fake.rows], market
    out = io.StringIO()
    call_command("export_candles", "--market", market.name, stdout=out)
    shifted = [{**r, "ts": r["ts"].isoformat()} for r in fake.rows]
    assert list(csv.reader(io.StringIO(out.getvalue())))[1:] == reference_candles(shifted, 10), market
    finals = set(Candle.objects.filter(market=market, final=True).values_list("start", flat=True))
    assert finals <= set(FeatureRow.objects.filter(market=market).values_list("start", flat=True)), market


def test_a_streams_worker_killed_mid_stream_loses_and_doubles_nothing():
    rows = read_rows(KRAKEN_BTCUSDT)[:500]
    with FakeKraken(rows, published=200) as fake:
        fake.chunk = 1  # one trade every 20 ms: the kill lands mid-stream
        market = get_or_create_market("kraken:BTC-USDT")
        Market.objects.filter(pk=market.pk).update(enabled=True)
        first = streams_worker(fake, "chaos1")
        second = None
        try:
            assert ensure_streams() == ["kraken:BTC-USDT"]
            wait_for(lambda: Trade.objects.filter(market=market).count() > 250)
            os.killpg(first.pid, signal.SIGKILL)  # no shutdown, no lease release, a step maybe half done
            first.wait(10)
            stored_at_kill = Trade.objects.filter(market=market).count()
            assert stored_at_kill < len(rows)
            second = streams_worker(fake, "chaos2")
            wait_for(lambda: not held(stream_key(market.name)), timeout=LEASE_S * 3)  # the dead worker's lease
            assert ensure_streams() == ["kraken:BTC-USDT"]
            wait_for(lambda: Trade.objects.filter(market=market).count() == len(rows))
            last = Candle.objects.filter(market=market, final=True).order_by("-start").values_list("start", flat=True)
            wait_for(lambda: FeatureRow.objects.filter(market=market, start=last.first()).exists())
        finally:
            stop(first, second)
    assert_stored_exactly(market, fake)


class Beat(threading.Thread):
    """ensure_streams() every BEAT_S, as the beat scheduler runs it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(BEAT_S):
                ensure_streams()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def consumed() -> set[str]:
    """The queues the running workers consume, as they answer over Celery's control channel."""
    replies = current_app.control.inspect(timeout=1.0).active_queues() or {}
    return {queue["name"] for consumer in replies.values() for queue in consumer}


def holders(markets: list[Market]) -> list[str | None]:
    return [holder(stream_key(m.name)) for m in markets]


def test_two_streams_workers_share_markets_and_one_takes_over_the_killed_ones():
    """Three markets, two workers: each market streamed by exactly one; one killed -9, the other takes its market."""
    rows = read_rows(KRAKEN_BTCUSDT)[:400]
    with FakeKraken(rows, published=150, pairs=PAIRS) as fake:
        fake.chunk = 1
        markets = [get_or_create_market(f"kraken:{symbol.replace('/', '-')}") for symbol in PAIRS]
        Market.objects.filter(pk__in=[m.pk for m in markets]).update(enabled=True)
        beat, first, second = Beat(), streams_worker(fake, "chaos1", 1), None
        try:
            # The first streams one market (it has one thread); the second the others, and could stream all three.
            beat.start()
            first_id = f"{socket.gethostname()} {first.pid}"
            wait_for(lambda: first_id in holders(markets))
            second = streams_worker(fake, "chaos2", 3)
            second_id = f"{socket.gethostname()} {second.pid}"
            wait_for(lambda: sorted(map(str, holders(markets))) == sorted([first_id, second_id, second_id]))
            wait_for(lambda: all(Trade.objects.filter(market=m).count() > 200 for m in markets))
            assert all(fake.streaming[symbol] == 1 for symbol in PAIRS), fake.streaming
            kept = {m.name: get_redis().get(stream_key(m.name)) for m in markets if holders([m]) == [second_id]}
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            started = time.monotonic()
            wait_for(lambda: holders(markets) == [second_id] * len(markets))
            took = time.monotonic() - started
            # The dead worker's lease expires within LEASE_S; the next beat after that starts its stream.
            assert took < LEASE_S + BEAT_S + SLACK_S, took
            print(f"the killed worker's market moved in {took:.1f}s (lease {LEASE_S:g}s, beat {BEAT_S:g}s)")
            wait_for(lambda: all(Trade.objects.filter(market=m).count() == len(rows) for m in markets))
            for market in markets:
                last = Candle.objects.filter(market=market, final=True).order_by("-start").values("start")[:1]
                wait_for(lambda m=market, s=last: FeatureRow.objects.filter(market=m, start__in=s).exists())
            # The survivor's own streams went on under the same leases.
            assert {name: get_redis().get(stream_key(name)) for name in kept} == kept
        finally:
            beat.stop()
            stop(first, second)
    assert fake.most_streaming == {symbol: 1 for symbol in PAIRS}  # never two streams of one market at once
    for market in markets:
        assert_stored_exactly(market, fake)


def test_streams_routed_by_market_to_two_queues_move_to_the_other_when_a_worker_is_killed(settings):
    """Two workers on separate queues (STREAM_QUEUES): each market is streamed by the worker of the queue its name
    hashes to, exactly once; one worker killed -9, its markets move to the other queue's worker."""
    queues = ("streams.a", "streams.b")
    settings.STREAM_QUEUES = queues
    pairs = {"BTC/USDT": "XBTUSDT", "ETH/USDT": "ETHUSDT", "LINK/USDT": "LINKUSDT", "ATOM/USDT": "ATOMUSDT"}
    rows = read_rows(KRAKEN_BTCUSDT)[:400]
    with FakeKraken(rows, published=150, pairs=pairs) as fake:
        fake.chunk = 1
        markets = [get_or_create_market(f"kraken:{symbol.replace('/', '-')}") for symbol in pairs]
        Market.objects.filter(pk__in=[m.pk for m in markets]).update(enabled=True)
        homes = [home_queue(m.name, queues) for m in markets]
        assert sorted(homes) == sorted(queues * 2), homes  # two markets on each queue
        workers = {queue: streams_worker(fake, queue, len(markets), queue) for queue in queues}
        ids = {queue: f"{socket.gethostname()} {worker.pid}" for queue, worker in workers.items()}
        beat = Beat()
        try:
            # Both workers first: a queue without a worker yet would hand its markets to the other (see below).
            wait_for(lambda: consumed() >= set(queues))
            beat.start()
            wait_for(lambda: holders(markets) == [ids[home] for home in homes])
            wait_for(lambda: all(Trade.objects.filter(market=m).count() > 200 for m in markets))
            killed, survivor = queues
            os.killpg(workers[killed].pid, signal.SIGKILL)
            workers[killed].wait(10)
            started = time.monotonic()
            wait_for(lambda: holders(markets) == [ids[survivor]] * len(markets))
            took = time.monotonic() - started
            # Its leases expire within LEASE_S; the next beat after that finds streams.a without a worker.
            assert took < LEASE_S + BEAT_S + SLACK_S, took
            print(f"the killed worker's markets moved to the other queue in {took:.1f}s (lease {LEASE_S:g}s)")
            wait_for(lambda: all(Trade.objects.filter(market=m).count() == len(rows) for m in markets))
            wait_for(lambda: all(featured(m) for m in markets))  # each step caught up before the workers stop
        finally:
            beat.stop()
            stop(*workers.values())
    assert fake.most_streaming == {symbol: 1 for symbol in pairs}  # never two streams of one market at once
    for market in markets:
        assert_stored_exactly(market, fake)


def test_a_replay_rides_out_a_redis_outage_with_one_line_each_way(tmp_path):
    """Redis (a private one) killed mid-replay and started 5 s later: the replay stores everything, exit 0,
    and says so in one line when Redis goes and one when it is back; no traceback."""
    redis_url, _ = embedded.ensure_redis(tmp_path)
    market = get_or_create_market("gemini:ETH-USD")
    env = {**os.environ, "DATABASE_URL": suite_database_url(), "REDIS_URL": redis_url}
    trades = first_hours(GEMINI, 6, tmp_path / "trades.csv.gz")
    argv = [sys.executable, "manage.py", "replay", str(trades), "--market", market.name, "--speed", "1000"]
    replay = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: Prediction.objects.filter(market=market).exists(), timeout=120)
        os.kill(int((tmp_path / "redis" / "redis.pid").read_text()), signal.SIGKILL)
        made = Prediction.objects.filter(market=market).count()
        # Predictions go on (the database has them); each one's live push and cache met the outage.
        wait_for(lambda: Prediction.objects.filter(market=market).count() > made + 100 or replay.poll() is not None)
        time.sleep(5)
        embedded.ensure_redis(tmp_path)
        out, err = replay.communicate(timeout=300)
    finally:
        if replay.poll() is None:
            replay.kill()
        embedded.stop_redis(tmp_path)
    assert replay.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"read {len(read_rows(trades))}, stored {len(read_rows(trades))}, duplicates 0" in out
    problems = [line for line in err.splitlines() if " INFO " not in line]
    assert len(problems) == 2, problems
    assert "redis unavailable" in problems[0] and "retrying" in problems[0]
    assert "redis back after" in problems[1]
