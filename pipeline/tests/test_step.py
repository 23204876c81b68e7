"""The pipeline step: runs beside ingest, survives its own failures, catches up, never doubles."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connections

from features import engine
from features.definitions import VERSION
from features.models import FeatureRow
from inference import predictions
from inference.models import Prediction
from inference.serving import ServedModel
from markets.models import Candle, Market, Trade
from markets.names import get_or_create_market
from modeling.forecast import PERSISTENCE
from modeling.models import ModelArtifact, ModelEvent
from pipeline.entry import replay, stream_runner
from pipeline.models import StepStatus
from testsupport.data import KRAKEN_BTCUSDT, SAMPLE, read_rows
from testsupport.fake_kraken import FakeKraken

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = read_rows(KRAKEN_BTCUSDT)[:1000]
GRACE_S = 0.3
ONE = timedelta(seconds=1)


@pytest.fixture
def live(settings):
    """A stand-in Kraken publishing real trades stamped with the time they are sent, 100 a second."""
    with FakeKraken(ROWS) as server:
        server.live, server.chunk = True, 2
        settings.KRAKEN_WS_URL = server.ws_url
        settings.KRAKEN_REST_URL = server.rest_url
        settings.CANDLE_GRACE_S = GRACE_S
        settings.STEP_RETRY_BASE_S = 0.05
        settings.STEP_RETRY_MAX_S = 0.2
        yield server


@pytest.fixture
def market() -> Market:
    market = get_or_create_market("kraken:BTC-USDT")
    Market.objects.filter(pk=market.pk).update(interval_s=1)
    market.refresh_from_db()
    return market


def artifact(market: Market, **fields) -> ModelArtifact:
    now = datetime.now(UTC)
    values = {
        "market": market,
        "interval_s": market.interval_s,
        "horizon": 1,
        "feature_version": VERSION,
        "algorithm": "ridge",
        "train_start": now,
        "train_end": now,
        "artifact": b"",
        "sha256": "",
        "version": 1,
        "status": ModelArtifact.Status.ACTIVE,
    }
    return ModelArtifact.objects.create(**(values | fields))


class Held:
    """A forecaster (of persistence) whose predictions after the first `free` wait until released."""

    def __init__(self, free: int):
        self.free, self.calls = free, 0
        self.waiting, self.release = threading.Event(), threading.Event()

    def predict_row(self, close, values):
        self.calls += 1
        if self.calls > self.free:
            self.waiting.set()
            self.release.wait(120)
        return Decimal(close), Decimal(close), Decimal(close)


class Broken:
    def predict_row(self, close, values):
        raise ZeroDivisionError("a model bug")


def serve(monkeypatch, served: ServedModel) -> None:
    monkeypatch.setattr(predictions, "get_served_model", lambda market, interval_s, horizon, found=None: served)


def stream_until(market: Market, done, timeout: float = 60.0) -> dict[datetime, float]:
    """Stream market with its step thread until done() holds; returns when each final candle was first seen."""
    runner, step = stream_runner(market)
    thread = threading.Thread(target=lambda: (runner.run(), connections.close_all()))
    thread.start()
    seen: dict[datetime, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            now = time.time()
            for start in Candle.objects.filter(market=market, final=True).values_list("start", flat=True):
                seen.setdefault(start, now)
            if done():
                break
            time.sleep(0.05)
    finally:
        runner.stopping.set()
        thread.join(10)
        step.stop()
    assert not thread.is_alive()
    return seen


def all_stored(market: Market) -> bool:
    return Trade.objects.filter(market=market).count() == len(ROWS)


def test_a_slow_model_never_delays_ingest(live, market, monkeypatch):
    """A prediction that does not return: trades and candles go on to the end; released, the step skips the stale."""
    model = artifact(market)
    held = Held(free=3)  # the first window's three horizons, then it hangs
    serve(monkeypatch, ServedModel(model.pk, 1, "slow", VERSION, held))
    ingested_while_held = []

    def done() -> bool:
        if not held.release.is_set():
            if held.waiting.is_set() and all_stored(market):
                if not Candle.objects.filter(market=market, final=False).exists():
                    ingested_while_held.append(held.calls)
                    held.release.set()
            return False
        status = StepStatus.objects.filter(market=market).first()
        last = FeatureRow.objects.filter(market=market).order_by("start").last()
        return status is not None and last is not None and status.predicted_until == last.start

    seen = stream_until(market, done, timeout=120)

    # Every trade stored and every window final while the model still held its fourth prediction.
    assert ingested_while_held == [4] and len(seen) >= 8
    # Every final window got features, and was predicted or counted as skipped, none twice.
    windows = FeatureRow.objects.filter(market=market).count()
    status = StepStatus.objects.get(market=market)
    predicted = Prediction.objects.filter(market=market).count()
    assert predicted >= 2 and status.skipped >= 2
    assert status.predictions == predicted
    assert Prediction.objects.filter(market=market, model=model).count() == predicted
    assert predicted + status.skipped >= windows - 2  # the last closes may still be on their way at stop


def test_a_failing_step_is_retried_and_never_reaches_the_stream(live, market, monkeypatch):
    real, calls = engine.compute_features, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 3:
            raise RuntimeError("database hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_features", flaky)
    seen = stream_until(market, lambda: all_stored(market))

    assert all_stored(market) and len(seen) >= 8  # the stream went on
    status = StepStatus.objects.get(market=market)
    assert status.failures == 3 and status.consecutive_failures == 0
    assert "features of" in status.last_error and "database hiccup" in status.last_error
    # The windows of the failed runs were caught up: each final window has its row and prediction.
    finals = set(Candle.objects.filter(market=market, final=True).values_list("start", flat=True))
    rows = set(FeatureRow.objects.filter(market=market).values_list("start", flat=True))
    made = Prediction.objects.filter(market=market).count()
    assert finals - rows <= {max(finals)} and rows <= finals
    # Each row at each of the 3 horizons; the last row may still be on its way at stop.
    assert made + status.skipped in (3 * len(rows), 3 * (len(rows) - 1))


def test_a_model_that_raises_serves_persistence_labelled_and_records_an_event(live, market, monkeypatch):
    model = artifact(market)
    serve(monkeypatch, ServedModel(model.pk, 1, "ridge", VERSION, Broken()))
    stream_until(market, lambda: all_stored(market) and Prediction.objects.filter(market=market).count() >= 5)

    assert all_stored(market)
    stored = Prediction.objects.filter(market=market)
    assert stored.count() >= 5
    assert set(stored.values_list("algorithm", "model")) == {(PERSISTENCE, None)}
    events = ModelEvent.objects.filter(artifact=model, action="serve failed")
    assert events.count() == 1 and "ZeroDivisionError" in events.get().reason


def test_a_model_that_cannot_be_loaded_serves_persistence_and_records_an_event():
    market = get_or_create_market("kraken:ETH-USD")
    model = artifact(market, artifact=b"not a model", sha256="0" * 64)
    replay(SAMPLE / "kraken_ETHUSD_trades_2022-03-20.csv.gz", market)

    stored = Prediction.objects.filter(market=market)
    assert stored.count() > 100
    assert set(stored.values_list("algorithm", "model")) == {(PERSISTENCE, None)}
    event = ModelEvent.objects.get(artifact=model, action="serve failed")
    assert "not loaded" in event.reason


def test_adaptive_grace_closes_early_and_a_late_trade_still_amends_refreshes_and_rescores(live, market, settings):
    settings.CANDLE_GRACE_S = 2.0  # the most a window may wait; the feed's lag decides
    settings.CANDLE_GRACE_MODE = "adaptive"
    late_row = 700
    live.late = {late_row: 2.5}  # stamped 2.5 s before it is sent: its window closed long ago
    started = time.time()
    seen = stream_until(market, lambda: all_stored(market) and Market.objects.get(pk=market.pk).late_trades)

    lags = sorted(at - (start.timestamp() + 1) for start, at in seen.items() if start.timestamp() > started + 1)
    # A fixed grace would keep every window open 2 s. (Not the median: a connection cut by a starved keepalive
    # refills its gap from REST, whose old trades raise the measured feed lag, and the grace with it.)
    assert len(lags) >= 5 and lags[0] < 1.0, lags
    market.refresh_from_db()
    assert market.late_trades == 1
    trade = Trade.objects.get(market=market, trade_id=int(ROWS[late_row]["trade_id"]))
    window = datetime.fromtimestamp(int(trade.ts.timestamp()), UTC)
    candle = Candle.objects.get(market=market, start=window)
    assert candle.amended == 1 and not candle.amend_pending  # amended, and the step has caught up with it
    # The feature rows that read the amended window equal a fresh computation, and so do the scores.
    stored = {r.start: r.values for r in FeatureRow.objects.filter(market=market, start__gte=window)}
    batch = engine.compute_features(market, 1, window, max(stored))
    for i, start in enumerate(batch.starts):
        if start in stored:
            assert stored[start] == batch.values(i), start
    scored = Prediction.objects.filter(market=market, target_time=window + ONE)
    assert scored.exists() and all(p.realized == candle.close for p in scored)
