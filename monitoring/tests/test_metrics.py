"""GET /metrics: multiprocess merge, access, and values checked against the database after a real replay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum
from django.test import Client

from core import prometheus
from features.models import FeatureRow
from inference import broadcast, readcache
from inference.metrics import live_metrics
from inference.models import Prediction
from markets.models import Candle, Trade
from markets.names import get_or_create_market
from markets.trades.replay import replay_trades
from monitoring import collector
from pipeline.entry import replay
from pipeline.step import MarketStep
from testsupport import wait_until
from testsupport.data import first_hours, read_rows, split_trades
from testsupport.scrape import parse, scrape, value
from testsupport.servers import Server

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
GEMINI_DAY = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
KRAKEN_ETH = SAMPLE / "kraken_ETHUSD_trades_2022-03-20.csv.gz"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    from django.db import connections

    connections["default"].settings_dict["CONN_MAX_AGE"] = 0
    with django_db_blocker.unblock(), Server() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_redis_keys():
    """Throttle windows and cached predictions are keyed by addresses and ids that tests reuse."""
    from core.redis_client import get_redis

    for pattern in ("inference:latest:*", "inference:throttle:*"):
        for key in get_redis().scan_iter(pattern):
            get_redis().delete(key)


def test_replay_counts_and_latencies_match_the_database(server, tmp_path):
    market = get_or_create_market("metrics:ETH-USD")
    # Four hours of the day: 1,440 windows, more than the live metrics' window of 1,000 scored predictions.
    trades_file = first_hours(GEMINI_DAY, 4, tmp_path / "gemini-4h.csv.gz")
    started = time.perf_counter()
    stats = replay(trades_file, market)
    elapsed = time.perf_counter() - started
    samples = scrape(server)
    m = market.name

    trades = Trade.objects.filter(market=market).count()
    assert trades == stats.stored == len(read_rows(trades_file)) > 1000
    assert value(samples, "cryptopred_trades_ingested_total", market=m) == trades
    assert (
        value(samples, "cryptopred_candles_finalized_total", market=m)
        == Candle.objects.filter(market=market, final=True).count()
    )
    assert (
        value(samples, "cryptopred_features_computed_total", market=m)
        == FeatureRow.objects.filter(market=market).count()
    )
    predictions = Prediction.objects.filter(market=market)
    assert predictions.count() > 3 * 1400  # three horizons
    assert value(samples, "cryptopred_predictions_total", market=m) == predictions.count()
    assert value(samples, "cryptopred_predictions_scored_total", market=m) == predictions.exclude(realized=None).count()
    assert value(samples, "cryptopred_predictions_skipped_total", market=m) is None  # a replay predicts every window
    # Model compute: one observation per stored prediction, the sum equal to the stored latencies.
    assert value(samples, "cryptopred_prediction_compute_seconds_count", market=m) == predictions.count()
    stored_ms = predictions.aggregate(total=Sum("latency_ms"))["total"]
    assert value(samples, "cryptopred_prediction_compute_seconds_sum", market=m) == pytest.approx(stored_ms / 1000)
    # Step durations: every successful run observed, together no longer than the replay itself.
    runs = value(samples, "cryptopred_step_runs_total", market=m, outcome="ok")
    assert runs >= 2
    assert value(samples, "cryptopred_step_duration_seconds_count", market=m) == runs
    assert 0 < value(samples, "cryptopred_step_duration_seconds_sum", market=m) <= elapsed
    # Scrape-time state: the market row and the live metrics of inference.metrics.
    market.refresh_from_db()
    assert value(samples, "cryptopred_last_trade_timestamp_seconds", market=m) == market.last_trade_at.timestamp()
    assert value(samples, "cryptopred_stream_state", market=m, state=market.stream_state) == 1
    live = live_metrics(market)["served"]
    assert value(samples, "cryptopred_live_windows", market=m, horizon="1", forecaster="all") == live["count"] == 1000
    assert value(samples, "cryptopred_live_rmse", market=m, horizon="1", forecaster="all") == pytest.approx(
        live["model"]["rmse"]
    )
    assert value(
        samples, "cryptopred_live_persistence_rmse", market=m, horizon="1", forecaster="persistence"
    ) == pytest.approx(live["persistence"]["rmse"])
    assert value(samples, "cryptopred_live_directional_accuracy", market=m, horizon="1", forecaster="all") == 0.5
    # Nothing trained: no P(up), so no accuracy of it. Then every scored window is called up at 0.7: the
    # accuracy is the share of the moved windows (of the newest LIVE_METRICS_WINDOW) that went up.
    assert value(samples, "cryptopred_live_p_up_accuracy", market=m, horizon="1", forecaster="all") is None
    assert live["direction"]["accuracy"] is None
    scored = predictions.filter(horizon=1).exclude(realized=None)
    scored.update(p_up=0.7, p_up_base=0.5)
    newest = scored.order_by("-made_at")[: settings.LIVE_METRICS_WINDOW]
    moves = [p.realized > p.base_close for p in newest if p.realized != p.base_close]
    collector._live.clear()  # scrape-time live metrics are kept LIVE_TTL_S
    p_up = value(scrape(server), "cryptopred_live_p_up_accuracy", market=m, horizon="1", forecaster="all")
    assert 0 < p_up < 1 and p_up == pytest.approx(sum(moves) / len(moves))
    six = live_metrics(market, 6)["served"]  # each horizon its own series
    assert value(samples, "cryptopred_live_rmse", market=m, horizon="6", forecaster="all") == pytest.approx(
        six["model"]["rmse"]
    )
    assert six["model"]["rmse"] > live["model"]["rmse"]
    assert value(samples, "cryptopred_celery_queue_length", queue="default") is not None
    assert value(samples, "cryptopred_scrape_error", part="live") is None
    # The scrape itself was counted by the request middleware; the next one shows it.
    assert value(scrape(server), "cryptopred_http_requests_total", handler="metrics", status="200") >= 1


def test_api_reads_are_counted_on_both_paths(server, settings):
    settings.API_ANONYMOUS_READ = True
    market = get_or_create_market("metricsapi:ETH-USD")
    (part,) = split_trades(KRAKEN_ETH, [400], Path(settings.DATA_DIR))
    replay(part, market)
    url = server.url(f"/api/v1/markets/{market.name}/predictions/latest/")
    label = {"handler": "api:latest-prediction", "status": "200"}
    readcache.REQUESTS.flush()  # counts of earlier tests' requests, whose event loops ended before their flush
    before = value(scrape(server), "cryptopred_http_requests_total", **label) or 0
    # The first answer comes from Django (and is kept), the others from Redis before Django.
    for _ in range(5):
        assert httpx.get(url, timeout=10).status_code == 200
    # The read cache writes its counts a second later.
    wait_until(lambda: value(scrape(server), "cryptopred_http_requests_total", **label) == before + 5, 30)


def test_live_prediction_delay_and_websocket_publish_delay(server, tmp_path):
    market = get_or_create_market("metricslive:ETH-USD")
    (part,) = split_trades(KRAKEN_ETH, [300], tmp_path)
    replay_trades(part, market)  # candles only: the step below runs as a live stream's would
    last = Candle.objects.filter(market=market, final=True).order_by("-start").first()
    window_end = (last.start + timedelta(seconds=market.interval_s)).timestamp()
    step = MarketStep(market, skip_stale=True, clock=lambda: window_end + 0.25)
    stats = step.run()
    # Each horizon h skips the windows whose target time (by the clock) has passed: all but the newest h.
    assert stats.predictions == 1 + 3 + 6 and stats.skipped == 3 * stats.features - 10
    made = Prediction.objects.filter(market=market)
    assert {h: made.filter(horizon=h).count() for h in (1, 3, 6)} == {1: 1, 3: 3, 6: 6}
    delays = [0.25 + 10 * k for h in (1, 3, 6) for k in range(h)]  # since each one's window end
    prometheus.step_done(market.name, vars(stats), 0.01)
    earlier = scrape(server)  # other tests of this process may have published already
    count_before = value(earlier, "cryptopred_ws_publish_delay_seconds_count", channel="predictions") or 0
    sum_before = value(earlier, "cryptopred_ws_publish_delay_seconds_sum", channel="predictions") or 0
    window_ended = time.time() - 0.5
    made_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(window_ended)) + f"{window_ended % 1:.6f}"[1:] + "Z"
    broadcast.publish("predictions", market, [{"type": "prediction", "made_at": made_at}])
    published = time.time()
    samples = scrape(server)
    m = market.name
    assert value(samples, "cryptopred_prediction_delay_seconds_count", market=m) == len(delays)
    assert value(samples, "cryptopred_prediction_delay_seconds_sum", market=m) == pytest.approx(sum(delays))
    assert value(samples, "cryptopred_prediction_delay_seconds_bucket", market=m, le="0.2") == 0
    assert value(samples, "cryptopred_prediction_delay_seconds_bucket", market=m, le="0.3") == 3
    assert value(samples, "cryptopred_predictions_skipped_total", market=m) == stats.skipped
    # The publish's delay is measured from the item's window end to the send.
    assert value(samples, "cryptopred_ws_publish_delay_seconds_count", channel="predictions") == count_before + 1
    observed = value(samples, "cryptopred_ws_publish_delay_seconds_sum", channel="predictions") - sum_before
    assert 0.5 <= observed <= published - window_ended


CHILD = """
import sys
from core.config import prepare_environment
prepare_environment()
from core import prometheus
prometheus.TRADES.labels("multiprocess:ETH-USD").inc(int(sys.argv[1]))
prometheus.WS_CONNECTIONS.inc()  # a live gauge: gone from the scrape once this process has exited
"""


def test_one_scrape_shows_every_process(server):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for amount in (3, 4):
        subprocess.run([sys.executable, "-c", CHILD, str(amount)], check=True, env=env, cwd=ROOT, timeout=120)
    prometheus.TRADES.labels("multiprocess:ETH-USD").inc(5)  # this process (the web runs in it too)
    samples = scrape(server)
    assert value(samples, "cryptopred_trades_ingested_total", market="multiprocess:ETH-USD") == 12
    assert value(samples, "cryptopred_ws_connections") == 0.0


STALE = """
import os
from core.config import prepare_environment, metrics_dir
prepare_environment()
from prometheus_client.values import MultiProcessValue
# A live gauge left by an earlier process with this pid (a restarted container: pids start over).
stale = MultiProcessValue()("gauge", "cryptopred_ws_connections", "cryptopred_ws_connections", (), (),
                            "Open websocket connections", multiprocess_mode="livesum")
stale.set(5)
assert os.path.exists(metrics_dir() / f"gauge_livesum_{os.getpid()}.db")
from core import prometheus
prometheus.WS_CONNECTIONS.inc()
print(prometheus.WS_CONNECTIONS._value.get())
"""


def test_a_new_process_does_not_inherit_live_gauges_of_its_pid():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", STALE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1.0"


def test_who_may_read_it(settings):
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="192.0.2.7")
    refused = outside.get("/metrics")
    assert refused.status_code == 403 and b"METRICS_TOKEN" in refused.content
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 403
    settings.METRICS_TOKEN = "s3cret-token"
    assert outside.get("/metrics").status_code == 403
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token-").status_code == 403
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-token").status_code == 403
    allowed = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert allowed.status_code == 200
    assert parse(allowed.content.decode())
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200  # loopback still may
    assert Client(REMOTE_ADDR="127.0.0.1").post("/metrics").status_code == 405


def test_plain_http_scrape_is_not_redirected_to_https(settings):
    """docker-compose.yml turns the HTTPS redirect on; Prometheus scrapes web:8000 over plain HTTP inside it."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.METRICS_TOKEN = "s3cret-token"
    client = Client(REMOTE_ADDR="172.18.0.5")  # another container
    assert client.get("/api/v1/markets/").status_code == 301
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def test_throttled_requests_are_counted(server, settings):
    settings.API_ANONYMOUS_READ = True
    settings.API_ANON_THROTTLE_RATE = "2/min"
    get_or_create_market("metricsthrottle:ETH-USD")
    url = server.url("/api/v1/markets/metricsthrottle:ETH-USD/")
    before = value(scrape(server), "cryptopred_api_throttled_total", client="anonymous") or 0
    codes = [httpx.get(url, timeout=10).status_code for _ in range(4)]
    assert codes.count(429) == 2

    # Refused by the read cache, whose counts are a second late.
    def counted() -> dict | None:
        samples = scrape(server)
        throttled = value(samples, "cryptopred_api_throttled_total", client="anonymous")
        refused = value(samples, "cryptopred_http_requests_total", handler="api:market", status="429")
        return samples if throttled == before + 2 and refused is not None and refused >= 2 else None

    samples = wait_until(counted, 30, "the read cache's counts")
    assert value(samples, "cryptopred_api_throttled_total", client="anonymous") == before + 2
    assert value(samples, "cryptopred_http_requests_total", handler="api:market", status="429") >= 2
