"""Fixtures of the inference tests: real trades replayed through the whole pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Max, Min

from apitokens.models import ApiToken
from core.redis_client import get_redis
from features import store
from features.definitions import VERSION
from features.models import FeatureRow
from markets.models import Market
from markets.names import get_or_create_market
from modeling import registry, serialization, training
from modeling.forecast import Forecaster, volatility_scale
from modeling.models import ModelArtifact
from testsupport import free_port
from testsupport.data import KRAKEN_ETH, split_trades
from testsupport.servers import Server

ROOT = Path(__file__).resolve().parents[2]
MARKET = "kraken:ETH-USD"


@pytest.fixture(autouse=True)
def clean_redis():
    """Cached predictions, answers and throttle counters are keyed by ids and addresses that tests reuse."""
    redis = get_redis()

    def wipe():
        for pattern in ("inference:latest:*", "inference:throttle:*", "inference:readcache:*"):
            for key in redis.scan_iter(pattern):
                redis.delete(key)

    wipe()
    yield
    wipe()


class StillClock:
    """The throttle windows' clock, held still at `now` (seconds) unless a test moves it."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttle_clock(monkeypatch) -> StillClock:
    """Throttle windows are clock-aligned (one per hour for N/hour): a test on the real clock that straddles a
    boundary sees its count reset. Held at the start of an hour, every request of a test falls in one window."""
    clock = StillClock(1_800_000_000.0)  # 2027-01-15T08:00:00Z, a whole hour (and minute, and day)
    monkeypatch.setattr("inference.api.throttling.clock", clock)
    return clock


@pytest.fixture
def parts(tmp_path) -> list[Path]:
    return split_trades(KRAKEN_ETH, [200] * 5, tmp_path)


@pytest.fixture
def market(db) -> Market:
    return get_or_create_market(MARKET)


def train_model(market: Market) -> ModelArtifact:
    """A ridge forecaster fitted (with modeling's own functions) on every stored window, as a candidate."""
    span = FeatureRow.objects.filter(market=market, interval_s=market.interval_s).aggregate(Min("start"), Max("start"))
    ds = training.build_dataset(store.materialize(market, market.interval_s, span["start__min"], span["start__max"]), 1)
    model = training.fit("ridge", ds)
    floor = training.scale_floor(ds)
    residuals = (ds.y - model.predict(ds.X)) / volatility_scale(ds.X, ds.names, floor)
    forecaster = Forecaster("ridge", model, ds.names, *training.band(residuals), floor)
    data, sha256 = serialization.dump(forecaster.payload())
    first, last = ds.span()
    return registry.create_artifact(
        market,
        market.interval_s,
        1,
        feature_version=VERSION,
        algorithm="ridge",
        train_start=first,
        train_end=last,
        artifact=data,
        sha256=sha256,
    )


def api_user(username: str = "bot") -> tuple:
    """A user and a new token of theirs; the key is token.key (the database holds only its digest)."""
    user = get_user_model().objects.create_user(username)
    return user, ApiToken.objects.issue(user, "test")


@pytest.fixture(scope="session")
def thread_connections_close(django_db_setup):
    """Connections opened by other threads (servers, background re-checks) close after each use,
    so none is left open on the test database at the end of the session."""
    from django.db import connections

    connections["default"].settings_dict["CONN_MAX_AGE"] = 0


@pytest.fixture(scope="session")
def server(thread_connections_close):
    with Server() as running:
        yield running


class AppProcess:
    """cryptopred.asgi under uvicorn in its own process, on the test database; its log in a file."""

    def __init__(self, log: Path, env: dict | None = None):
        parts = urlsplit(os.environ["DATABASE_URL"])
        test_db = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
        self.port, self.log = free_port(), log
        env = {
            **os.environ,
            "DATABASE_URL": test_db,
            "API_ANONYMOUS_READ": "true",
            # Throttling stays on (its code runs), at rates the fuzzing cannot reach: handlers see every request.
            "API_THROTTLE_RATE": "1000000/s",
            "API_ANON_THROTTLE_RATE": "1000000/s",
            "LOG_LEVEL": "WARNING",
            "WS_MAX_CONNECTIONS_PER_ADDRESS": "100000",  # every client of these tests is on loopback
            **(env or {}),
        }
        argv = [sys.executable, "-m", "uvicorn", "cryptopred.asgi:application", "--port", str(self.port)]
        argv += ["--ws", "core.wsframes:FrameTransportProtocol", "--ws-per-message-deflate", "false"]
        argv += ["--lifespan", "off", "--log-level", "warning"]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                httpx.get(self.url("/api/v1/markets/"), timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not start: {self.log.read_text()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def open_connections(self) -> list:
        return [
            c
            for c in psutil.Process(self.process.pid).net_connections(kind="tcp")
            if c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        ]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
