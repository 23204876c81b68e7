"""The direction forecast: P(up | move) and P(move), gated against the base rate; target mid in train and backtest."""

from __future__ import annotations

import csv
import importlib
import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from django.core.management import CommandError

from features import engine
from features.definitions import BOOK_FEATURES
from markets.models import BookWindow
from markets.names import get_or_create_market
from modeling import direction, serialization
from modeling.direction import (
    BASE_RATE,
    BOOSTED,
    LOGISTIC,
    LOGISTIC_BOOK_FEATURES,
    MICROPRICE,
    MODEL,
    ComponentWalk,
    served_run,
    train_direction,
    verdict,
)
from modeling.evaluation import sign_test
from modeling.market_training import train_market
from modeling.training import Dataset, build_dataset, dm_pvalue
from pipeline.entry import replay, replay_book
from testsupport.data import BINANCE_ETH_1M, BITSTAMP_BOOK, BITSTAMP_TRADES
from testsupport.feed import run

MARKET = "bitstamp:BTC-USD"
T0 = datetime(2015, 5, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return datetime.fromtimestamp(T0.timestamp() + 60 * minutes, UTC)


@pytest.fixture
def bitstamp(db, one_horizon):
    """The real Bitstamp BTC/USD L2 book and trades of 2015-05-01 00:00-03:00."""
    market = get_or_create_market(MARKET)
    replay_book(BITSTAMP_BOOK, market)
    replay(BITSTAMP_TRADES, market)
    return market


# --- the gate's significance test ----------------------------------------------------------------------------------

# Per-window loss differences d_i = -0.1 + 0.5 (-1)^i, i = 0..99: mean -0.1, lag-k autocovariance 0.25 (-1)^k (n-k)/n.
# Newey-West with int(100^(1/3)) = 4 Bartlett lags:
#   0.25 + 2 * 0.25 * (-0.8 * 0.99 + 0.6 * 0.98 - 0.4 * 0.97 + 0.2 * 0.96) = 0.25 - 0.2 = 0.05
# t = -0.1 / sqrt(0.05 / 100) = -sqrt(20) = -4.4721, one-sided p = Phi(-4.4721) = 3.8721e-06
# (a plain t-test, variance 0.25, would say t = -2, p = 0.0228).
KNOWN_D = -0.1 + 0.5 * (-1.0) ** np.arange(100)
KNOWN_P = 0.5 * math.erfc(math.sqrt(20) / math.sqrt(2))


def test_dm_pvalue_on_a_known_case():
    assert KNOWN_P == pytest.approx(3.8721e-06, rel=1e-4)
    assert dm_pvalue(KNOWN_D, np.zeros(100), horizon=1) == pytest.approx(KNOWN_P, rel=1e-9)
    assert dm_pvalue(-KNOWN_D, np.zeros(100), horizon=1) == pytest.approx(1 - KNOWN_P, rel=1e-9)
    assert dm_pvalue(np.full(50, -0.01), np.zeros(50), 1) == 0.0  # the same win every window: certain
    assert dm_pvalue(np.zeros(50), np.zeros(50), 1) == 1.0  # no difference at all: no win


def walk_with_log_loss_differences(d: np.ndarray) -> ComponentWalk:
    """Every window went up, the base rate says 1/2: a model probability p_i has log loss -log p_i, so
    p_i = exp(-(log 2 + d_i)) makes the per-window log-loss differences exactly d."""
    p = np.exp(-(math.log(2) + d))
    return ComponentWalk(p, np.full(len(d), 0.5), np.ones(len(d), dtype=bool))


def test_the_direction_gate_on_a_known_case():
    won = verdict(walk_with_log_loss_differences(KNOWN_D), horizon=1, significance=0.05)
    assert won["p_value"] == pytest.approx(KNOWN_P, rel=1e-6)
    assert won["log_loss"] - won["log_loss_reference"] == pytest.approx(-0.1)
    assert won["brier"] < won["brier_reference"] == 0.25
    assert (won["source"], won["loses"]) == (MODEL, False) and won["reason"].startswith("beats the base rate")
    # The same windows at a tenth of the edge: better on average, not significantly: the base rate is served.
    weak = verdict(walk_with_log_loss_differences(KNOWN_D + 0.09), horizon=1, significance=0.05)
    assert weak["log_loss"] < weak["log_loss_reference"] and weak["p_value"] == pytest.approx(0.3274, abs=1e-3)
    assert weak["source"] == BASE_RATE
    # Worse than the base rate: it loses (a model kept from an earlier run gives way).
    worse = verdict(walk_with_log_loss_differences(-KNOWN_D), horizon=1, significance=0.05)
    assert (worse["source"], worse["loses"]) == (BASE_RATE, True)
    assert worse["reason"].startswith("does not beat the base rate")


def test_the_sign_test_of_paired_calls_on_known_cases():
    # Right 1, wrong 0, no call 1/2: only the windows where the two differ count.
    served, rule = np.array([1, 1, 1, 0.5, 0, 1]), np.array([0, 0, 0.5, 0.5, 0, 1])
    assert sign_test(served, rule) == pytest.approx(2 * 1 / 8)  # 3 wins of 3: P(0 losses) = 1/8, two-sided
    assert sign_test(rule, served) == sign_test(served, rule)
    # 7 wins, 3 losses: 2 * (1 + 10 + 45 + 120) / 1024.
    assert sign_test(np.array([1] * 7 + [0] * 3), np.array([0] * 7 + [1] * 3)) == pytest.approx(2 * 176 / 1024)
    assert sign_test(np.ones(4), np.ones(4)) == 1.0


def test_a_model_that_passed_is_served_until_a_run_finds_it_no_better():
    passed, inconclusive, lost = {"source": MODEL}, {"source": BASE_RATE, "loses": False}, {"source": BASE_RATE}
    assert served_run([passed, lost]) == 0
    assert served_run([inconclusive, inconclusive, passed, lost]) == 2
    assert served_run([inconclusive, lost, passed]) is None
    assert served_run([lost, passed]) is None
    assert served_run([inconclusive]) is None and served_run([]) is None


# --- the candidates ------------------------------------------------------------------------------------------------


def synthetic(p_up, n: int = 1200, seed: int = 0) -> Dataset:
    """Rows of every v1 and v2 feature, independent noise; the target moves up with probability p_up(X, names)."""
    rng = np.random.default_rng(seed)
    names = [f"v1_{i}" for i in range(5)] + list(BOOK_FEATURES)
    X = rng.normal(size=(n, len(names)))
    up = rng.random(n) < p_up(X, names)
    moved = rng.random(n) < 0.7
    y = np.where(moved, np.where(up, 1e-4, -1e-4), 0.0)
    return Dataset(10, 1, 10 * np.arange(n), names, X, np.full(n, 100.0), y, "mid")


def imbalance_calls_it(X, names):
    """The rule is the signal: P(up) is a logistic curve of the queue imbalance alone."""
    return 1 / (1 + np.exp(-1.5 * X[:, names.index("l1_imbalance")]))


def test_the_microprice_model_is_served_where_the_rule_is_the_signal():
    out = train_direction(synthetic(imbalance_calls_it), 0.5, 0.05)
    candidates = out.metrics["candidates"]
    assert set(candidates) == {MICROPRICE, LOGISTIC, BOOSTED}
    assert all(v["source"] == MODEL for v in candidates.values())  # every one of them beats the base rate
    assert candidates[MICROPRICE]["log_loss"] < min(candidates[n]["log_loss"] for n in (LOGISTIC, BOOSTED))
    assert out.forecaster.model_name == out.metrics["model"] == MICROPRICE
    assert out.forecaster.up.features == ["l1_imbalance"] and out.metrics["up"]["candidate"] == MICROPRICE
    # Served: higher imbalance, higher P(up); from a stored payload just the same.
    ds = synthetic(imbalance_calls_it, n=5, seed=1)
    ds.X[:, ds.names.index("l1_imbalance")] = [-2, -1, 0, 1, 2]
    p_up, _ = out.forecaster.predict(ds.X, ds.names)
    assert (np.diff(p_up) > 0).all() and p_up[0] < 0.2 and p_up[-1] > 0.8
    stored = direction.DirectionForecaster.from_payload(out.forecaster.payload())
    assert stored.model_name == MICROPRICE and (stored.predict(ds.X, ds.names)[0] == p_up).all()


def test_the_base_rate_is_served_when_no_candidate_passes_its_gate():
    out = train_direction(synthetic(lambda X, names: np.full(len(X), 0.6)), 0.5, 0.05)
    assert [v["source"] for v in out.metrics["candidates"].values()] == [BASE_RATE] * 3
    assert out.forecaster.model_name == out.metrics["model"] == BASE_RATE
    ds = synthetic(imbalance_calls_it, n=2)
    assert (out.forecaster.predict(ds.X, ds.names)[0] == out.forecaster.up.base).all()


def test_without_a_book_the_logistic_regression_is_the_only_candidate():
    ds = synthetic(imbalance_calls_it)
    v1 = Dataset(10, 1, ds.starts, ds.names[:5], ds.X[:, :5], ds.close, ds.y, "close")
    out = train_direction(v1, 0.5, 0.05)
    assert list(out.metrics["candidates"]) == [LOGISTIC] and out.forecaster.up.features == v1.names


def test_a_forecast_stored_before_the_candidates_is_migrated_to_the_logistic_one():
    """Payloads without candidate names or per-model features: the logistic regression on the payload's features."""
    upgrade = importlib.import_module("modeling.migrations.0004_artifact_payloads_current").upgrade
    ds = synthetic(imbalance_calls_it)
    X = ds.X[:, [ds.names.index(n) for n in LOGISTIC_BOOK_FEATURES]]
    model = direction.fit_classifier(X, ds.y > 0)
    old = {
        "features": list(LOGISTIC_BOOK_FEATURES),
        "up": {"base": 0.5, "model": model, "source": MODEL},
        "move": {"base": 0.7, "model": None, "source": BASE_RATE},
    }
    artifact = {"model": None, "direction": old}
    assert upgrade(artifact) and not upgrade(artifact)
    stored = direction.DirectionForecaster.from_payload(artifact["direction"])
    assert stored.model_name == LOGISTIC and stored.features == list(LOGISTIC_BOOK_FEATURES)
    p_up, p_move = stored.predict_row(dict(zip(ds.names, ds.X[0], strict=True)))
    assert (p_up, p_move) == (direction.probability(model, X[:1])[0], 0.7)


# --- on real data ---------------------------------------------------------------------------------------------------


def dataset(market, first: datetime, last: datetime):
    return build_dataset(engine.compute_features(market, 10, first, last), 1, target="mid")


def test_shuffled_targets_fall_back_to_the_base_rate(bitstamp):
    """The book predicts the next mid's direction over these three hours; with the outcomes shuffled, nothing does."""
    ds = dataset(bitstamp, at(0), at(180))
    real = train_direction(ds, 0.5, 0.05)
    assert set(real.metrics["candidates"]) == {MICROPRICE, LOGISTIC, BOOSTED}
    assert real.forecaster.up.source == MODEL, real.metrics["up"]["reason"]
    assert real.metrics["up"]["accuracy"] > 0.6 and real.metrics["up"]["p_value"] < 0.05
    for seed in range(3):
        shuffled = ds.subset(np.ones(len(ds), dtype=bool))
        shuffled.y = np.random.default_rng(seed).permutation(ds.y)
        out = train_direction(shuffled, 0.5, 0.05)
        assert out.forecaster.up.source == BASE_RATE, (seed, out.metrics["candidates"])
        assert out.forecaster.move.source == BASE_RATE, (seed, out.metrics["move"]["reason"])
        moved = shuffled.y != 0
        p_up, p_move = out.forecaster.predict(shuffled.X[:5], shuffled.names)
        assert (p_up == direction.base_rate((shuffled.y > 0)[moved])).all()
        assert (p_move == direction.base_rate(moved)).all()


def test_train_records_the_target_and_stores_the_direction_forecast(bitstamp, settings):
    settings.TRAIN_MIN_ROWS = 300
    artifact = train_market(bitstamp, window_s=7200)
    assert (artifact.feature_version, artifact.target) == ("v2", "mid")
    up = artifact.metrics["direction"]["up"]
    assert artifact.direction_source == up["source"] and up["rows"] > 100
    assert {"log_loss", "log_loss_reference", "brier", "brier_reference", "p_value", "reliability"} <= set(up)
    payload = serialization.load(artifact.artifact, artifact.sha256)
    assert payload["target"] == "mid" and payload["volatility"] == ["mid_vol_10", "mid_vol_60"]
    stored = direction.DirectionForecaster.from_payload(payload["direction"])
    assert stored.move.features == list(LOGISTIC_BOOK_FEATURES) and stored.up.source == artifact.direction_source
    assert stored.model_name == artifact.direction_model == artifact.metrics["direction"]["model"]
    # The close can still be asked for on a market with a book (its trades' last price).
    [closing] = json.loads(
        run("train", "--market", MARKET, "--target", "close", "--train-window", "2h", "--horizon", "1", "--json")
    )
    # Unlike the mid, the last trade's price bounces between bid and ask: on these three hours the book does not
    # call its direction better than the base rate, and the close's own gate says so.
    assert closing["target"] == "close" and closing["direction_source"] == BASE_RATE
    up = closing["metrics"]["direction"]["up"]
    assert up["source"] == BASE_RATE
    assert up["reason"].startswith(("does not beat the base rate", "no significant win over the base rate"))


def test_target_mid_needs_a_book(db):
    run("import_candles", str(BINANCE_ETH_1M), "--market", "binance:ETH-USDT", "--interval", "1m")
    for command in ("train", "backtest"):
        with pytest.raises(CommandError, match="target mid needs the market's order book"):
            run(command, "--market", "binance:ETH-USDT", "--target", "mid")


# --- backtest -------------------------------------------------------------------------------------------------------

ARGS = ["--market", MARKET, "--target", "mid", "--start", "2015-05-01T00:40:00Z", "--train-window", "1h"]
ARGS += ["--retrain-every", "30m", "--min-rows", "150", "--end", "2015-05-01T01:40:00Z", "--json"]


def test_backtest_direction_next_to_its_baselines_without_look_ahead(bitstamp, tmp_path):
    result = json.loads(run("backtest", *ARGS, "--out", str(tmp_path / "before.csv")))
    assert result["target"] == "mid" and result["start"] == "2015-05-01T00:40:00Z"
    d = result["direction"]
    keys = {"accuracy", "brier", "brier_reference", "log_loss", "log_loss_reference", "moved_rows"}
    assert keys <= set(d) and {"base_rate_accuracy", "microprice_accuracy", "move", "served_by"} <= set(d)
    before = list(csv.DictReader(open(tmp_path / "before.csv")))
    assert len(before) == result["rows"] and {r["target"] for r in before} == {"mid"}
    # The direction is scored on the windows whose mid moved, every one of them with a probability.
    moved = [r for r in before if r["realized"] != r["close"]]
    assert d["moved_rows"] == len(moved) > 100
    p_up = [float(r["p_up"]) for r in moved]
    up = [float(r["realized"]) > float(r["close"]) for r in moved]
    calls = [0.5 if p == 0.5 else float((p > 0.5) == u) for p, u in zip(p_up, up, strict=True)]  # 1/2: no call
    assert d["accuracy"] == pytest.approx(sum(calls) / len(calls))
    assert sum(d["served_by"].values()) == sum(d["served_model_by"].values()) == result["rows"]
    # Every candidate, the served forecast, the rule and the base rate on the same moved windows.
    assert set(d["candidates"]) == {MICROPRICE, LOGISTIC, BOOSTED, "served", "microprice rule", BASE_RATE}
    assert all(set(v) == {"accuracy", "brier", "log_loss"} for v in d["candidates"].values())
    assert d["candidates_rows"] == d["moved_rows"]
    assert d["candidates"]["served"]["accuracy"] == pytest.approx(d["accuracy"])
    assert d["candidates"]["served"]["brier"] == pytest.approx(d["brier"])
    assert d["candidates"]["microprice rule"]["accuracy"] == pytest.approx(d["microprice_accuracy"])
    assert d["candidates"][BASE_RATE]["brier"] == pytest.approx(d["brier_reference"])
    assert 0 < d["served_vs_rule_pvalue"] <= 1
    # Persistence of the mid is the mid at the window end.
    mids = {w.start: w.mid for w in BookWindow.objects.filter(market=bitstamp)}
    assert float(before[0]["close"]) == float(mids[datetime(2015, 5, 1, 0, 40, tzinfo=UTC)])

    # No look-ahead: the book state used for window t is the state as of t's end. Changing every book
    # window from 01:10 on leaves each prediction whose target window ends by 01:10 as it was.
    cut = datetime(2015, 5, 1, 1, 10, tzinfo=UTC)
    BookWindow.objects.filter(market=bitstamp, start__gte=cut).update(
        mid=1, microprice=2, bid_qty=500, ask_qty=1, ofi=-1e6, imbalance_tw=-1, depth_imbalance=1
    )
    run("backtest", *ARGS, "--out", str(tmp_path / "after.csv"))
    after = list(csv.DictReader(open(tmp_path / "after.csv")))
    cutoff = "2015-05-01T01:10:00Z"
    kept = [r for r in before if r["target_time"] <= cutoff]
    assert len(kept) > 150 and [r for r in after if r["target_time"] <= cutoff] == kept
    assert [a for a in after if a["made_at"] > cutoff and a not in before]  # not vacuous: later rows did change
