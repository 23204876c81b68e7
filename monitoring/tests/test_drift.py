"""Drift on real data: a real day followed by another market's trades drifts; a homogeneous day does not."""

from __future__ import annotations

import csv
import gzip
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client

from cryptopred.demo import split_trades
from markets.models import Market
from markets.names import get_or_create_market
from markets.trades.ticks import parse_ts
from modeling.market_training import train_market
from modeling.models import ModelEvent
from monitoring import drift
from monitoring.models import DriftReport
from monitoring.tasks import check_drift
from pipeline.entry import replay

pytestmark = pytest.mark.django_db
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
GEMINI_DAY = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"  # 25,222 trades, 8,638 windows of 10 s
BINANCE_ETH = SAMPLE / "binance_ETHUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"  # 14,515 trades in 11 minutes
SPLICE = datetime(2021, 7, 2, tzinfo=UTC)  # right after the Gemini day


def shifted_copies(source: Path, start: datetime, copies: int, dest: Path) -> Path:
    """source's trades repeated copies times back to back from start (trade ids left to be derived from ts)."""
    with gzip.open(source, "rt") as f:
        rows = list(csv.reader(f))[1:]
    times = [parse_ts(row[0]) for row in rows]
    span = times[-1] - times[0] + timedelta(seconds=1)
    with gzip.open(dest, "wt", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ts", "price", "qty", "side", "trade_id"])
        for k in range(copies):
            shift = start - times[0] + span * k
            for ts, row in zip(times, rows, strict=True):
                writer.writerow([(ts + shift).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), row[1], row[2], row[3], ""])
    return dest


def test_psi_of_identical_and_shifted_samples():
    rng = __import__("numpy").random.default_rng(0)
    base = rng.normal(size=5000)
    assert drift.psi(base, base) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(base, rng.normal(size=1000)) < 0.05
    assert drift.psi(base, rng.normal(loc=1.0, size=1000)) > 0.25
    assert drift.psi(base[:10], base) is None  # too few rows


def test_fires_on_a_real_day_followed_by_another_markets_trades(settings, tmp_path):
    settings.DRIFT_WINDOW = 600
    settings.DRIFT_ERROR_WINDOW = 2000
    settings.PROMOTION_SIGNIFICANCE = 0.0  # the model is never promoted: persistence serves throughout
    market = get_or_create_market("drift:ETH-USD")
    replay(GEMINI_DAY, market)
    reference = train_market(market, window_s=24 * 3600)
    spliced = shifted_copies(BINANCE_ETH, SPLICE, 10, tmp_path / "binance_shifted.csv.gz")
    replay(spliced, market)

    report = drift.check(market, 1)
    print(report.detail, report.psi, report.error_mean_before, report.error_mean_after)
    assert report.reference == reference
    assert report.recent_rows == 600 and report.recent_start >= SPLICE
    assert report.reference_rows > 8000
    assert report.feature_drift and report.max_psi > settings.DRIFT_PSI_THRESHOLD
    assert "tod_sin" not in report.psi and "ret_1" in report.psi
    assert report.error_drift
    assert report.error_change_at >= SPLICE - timedelta(minutes=30)
    assert sum(v > settings.DRIFT_PSI_THRESHOLD for v in report.psi.values()) > len(report.psi) / 2
    assert "features drifted" in report.detail and "error level changed" in report.detail
    settings.API_ANONYMOUS_READ = True
    page = " ".join(Client().get("/models/").content.decode().split())
    assert "drifted · live errors changed level at 2021-07-02" in page


def test_quiet_on_a_homogeneous_real_day(settings, tmp_path):
    settings.PROMOTION_SIGNIFICANCE = 0.0
    market = get_or_create_market("steady:ETH-USD")
    first, rest, cut = split_trades(GEMINI_DAY, tmp_path, 12 * 3600)
    replay(first, market)
    train_market(market, window_s=12 * 3600)
    replay(rest, market)
    report = drift.check(market, 1)
    print(report.detail, report.psi, report.error_mean_before, report.error_mean_after)
    assert report.recent_rows == settings.DRIFT_WINDOW == 1000 and report.recent_start > cut
    assert report.error_rows == settings.DRIFT_ERROR_WINDOW
    assert not report.feature_drift, report.psi
    # A few features do move within a day (volatility, order flow): reported, not declared drift.
    assert 0 < sum(v > settings.DRIFT_PSI_THRESHOLD for v in report.psi.values()) < len(report.psi) / 4
    assert not report.error_drift, report.detail
    # The models page says so in the market's drift line.
    settings.API_ANONYMOUS_READ = True
    page = Client().get("/models/").content.decode()
    assert f"largest PSI {report.max_psi:.2f} ({report.max_psi_feature}), stable" in " ".join(page.split())
    assert "live errors stable over 2,000 windows" in " ".join(page.split())


def test_beat_task_reports_and_retrains_early_when_asked(settings, tmp_path, celery_worker_app, transactional_db):
    settings.DRIFT_WINDOW = 600
    settings.DRIFT_RETRAIN = True
    settings.PROMOTION_SIGNIFICANCE = 0.0
    market = get_or_create_market("driftretrain:ETH-USD")
    replay(GEMINI_DAY, market)
    reference = train_market(market, window_s=24 * 3600)
    replay(shifted_copies(BINANCE_ETH, SPLICE, 10, tmp_path / "shifted.csv.gz"), market)
    Market.objects.filter(pk=market.pk).update(enabled=True)
    try:
        found = check_drift()
        assert "features drifted" in found[f"{market.name} +1"]
        report = DriftReport.objects.filter(market=market, horizon=1).first()
        assert report.retrain_queued
        event = ModelEvent.objects.get(artifact=reference, action="drift retrain")
        assert "early retraining queued" in event.reason
        # The worker trains the market again, every horizon: a new model, on data that now includes the new regime.
        deadline = time.monotonic() + 300
        while market.model_artifacts.count() < 1 + 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        newer = market.model_artifacts.filter(horizon=1).order_by("-version").first()
        assert newer.version == reference.version + 1 and newer.train_end > SPLICE
        # Within the cooldown a second drift queues nothing more.
        check_drift()
        assert DriftReport.objects.filter(market=market, retrain_queued=True).count() == 1
    finally:
        Market.objects.filter(pk=market.pk).update(enabled=False)
