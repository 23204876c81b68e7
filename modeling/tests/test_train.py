"""manage.py train: walk-forward metrics next to persistence, the promotion gate, bad input."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from django.core.management import CommandError
from django.db.models import Max, Min

from features.engine import compute_features
from markets.models import Candle
from modeling.models import ModelArtifact, ModelEvent
from modeling.tests.conftest import ETH, REVERSAL, rebuilt_eth
from modeling.training import ALGORITHMS, Dataset, build_dataset, dm_pvalue, fold_bounds, gate, train, walk_forward
from testsupport.data import BINANCE_BTC_1M, BINANCE_ETH_1M
from testsupport.feed import run

KEYS = {"rmse", "mae", "mae_bps", "directional_accuracy", "coverage_80"}


def train_json(*extra) -> dict:
    """The outcome of training the one-window horizon."""
    [result] = json.loads(run("train", "--market", ETH, "--json", "--horizon", "1", *extra))
    return result


def test_train_without_a_horizon_trains_and_gates_every_horizon(edge):
    results = json.loads(run("train", "--market", ETH, "--json"))
    assert [r["horizon"] for r in results] == [1, 3, 6]
    artifacts = [ModelArtifact.objects.get(pk=r["model_id"]) for r in results]
    assert [(a.horizon, a.version) for a in artifacts] == [(1, 1), (3, 1), (6, 1)]  # each its own registry line
    for result, artifact in zip(results, artifacts, strict=True):
        assert ModelEvent.objects.get(artifact=artifact, action="gate").to_status == result["status"]
    # The same windows, each with its own target: wider bands further ahead.
    bands = [r["metrics"]["persistence"]["band"][1] for r in results]
    assert bands[0] < bands[2]
    assert results[0]["status"] == "active"  # the planted one-minute edge
    text = run("train", "--market", ETH, "--horizon", "3")
    assert text.startswith("horizon 3: model ") and "horizon 1" not in text


def test_train_json_reports_model_next_to_persistence(edge):
    result = train_json()
    keys = {"horizon", "model_id", "status", "reason", "metrics", "target", "direction_source", "direction_model"}
    assert set(result) == keys
    assert result["target"] == "close" and result["direction_source"] in {"model", "base rate"}  # no book: close
    assert result["status"] == "active" and "beats persistence" in result["reason"]  # the planted edge
    assert KEYS <= set(result["metrics"]["model"]) and KEYS <= set(result["metrics"]["persistence"])
    persistence = result["metrics"]["persistence"]
    assert persistence["directional_accuracy"] == 0.5  # "no move" is a coin flip on windows that moved
    assert 0 < persistence["rmse"] and persistence["rows"] == result["metrics"]["model"]["rows"] > 500
    q_lo, q_hi, floor = persistence["band"]  # served while no model is active
    assert q_lo < 0 < q_hi and floor > 0
    assert 0.6 < result["metrics"]["model"]["coverage_80"] < 0.95  # calibrated on earlier folds only
    artifact = ModelArtifact.objects.get(pk=result["model_id"])
    assert artifact.sha256 == hashlib.sha256(bytes(artifact.artifact)).hexdigest()
    assert (artifact.interval_s, artifact.horizon, artifact.market.name) == (60, 1, ETH)
    assert (artifact.train_end - artifact.train_start).total_seconds() <= 24 * 3600
    assert ModelEvent.objects.get(artifact=artifact, action="gate").to_status == result["status"]
    assert f"vs persistence {persistence['rmse']:.6g}" in result["reason"]


def test_second_training_must_also_beat_the_active_model(edge, settings):
    settings.PROMOTION_MARGIN = 0.0
    first = train_json("--train-window", "12h")
    assert first["status"] == "active"  # the planted edge is plain in 12 hours already
    second = train_json()  # the same edge over 24 hours: no better than the model that has it
    assert second["status"] == "rejected" and "does not beat the active model" in second["reason"]
    assert second["metrics"]["active"] is not None and KEYS <= set(second["metrics"]["active"])
    assert "and active" in second["reason"] and "(p " in second["reason"]
    assert second["metrics"]["active"]["rmse"] < second["metrics"]["persistence"]["rmse"]
    assert list(ModelArtifact.objects.filter(status="active").values_list("pk", flat=True)) == [first["model_id"]]


def test_an_active_model_that_loses_to_persistence_is_retired(db, tmp_path, settings):
    """A day with the edge planted, then a day without any (its returns shuffled)."""
    settings.PROMOTION_MARGIN = 0.0
    run("import_candles", str(BINANCE_BTC_1M), "--market", "binance:BTC-USDT", "--interval", "1m")
    last = rebuilt_eth(tmp_path / "edge.csv", slice(0, 1440), REVERSAL)
    rebuilt_eth(tmp_path / "noise.csv", slice(1440, None), None, open_price=last)
    run("import_candles", str(tmp_path / "edge.csv"), "--market", ETH, "--interval", "1m")
    first = train_json()
    assert first["status"] == "active"
    run("import_candles", str(tmp_path / "noise.csv"), "--market", ETH, "--interval", "1m")
    second = train_json()  # the last 24 hours: the day without an edge
    assert second["status"] == "rejected" and "does not beat persistence" in second["reason"]
    assert second["metrics"]["active"]["rmse"] > second["metrics"]["persistence"]["rmse"]
    retired = ModelArtifact.objects.get(pk=first["model_id"])
    assert retired.status == "retired" and retired.reason.startswith("no longer beats persistence")
    assert not ModelArtifact.objects.filter(status="active").exists()  # persistence is served


def test_margin_rejects_with_the_numbers(eth, settings):
    settings.PROMOTION_MARGIN = 0.5
    result = train_json()
    assert result["status"] == "rejected"
    assert "does not beat persistence" in result["reason"] and "margin 50.0%" in result["reason"]
    assert not ModelArtifact.objects.filter(status="active").exists()


def test_gate_rules():
    def m(rmse: float, p: float = 0.01) -> dict:
        return {"rmse": rmse, "rows": 100, "p_vs_persistence": p, "p_vs_active": p}

    assert gate(m(0.9), m(1.0), None, 0.0, 0.05)[0]
    assert not gate(m(1.0), m(1.0), None, 0.0, 0.05)[0]  # a tie is not a win
    assert not gate(m(0.95), m(1.0), None, 0.1, 0.05)[0]
    assert not gate(m(0.9), m(1.0), m(0.8), 0.0, 0.05)[0]
    assert gate(m(0.7), m(1.0), m(0.8), 0.1, 0.05)[0]
    promote, reason = gate(m(0.9, p=0.2), m(1.0), None, 0.0, 0.05)
    assert not promote and reason.startswith("no significant win over persistence") and "(p 0.2)" in reason
    assert gate(m(0.9, p=0.2), m(1.0), None, 0.0, 0.25)[0]


def test_diebold_mariano_needs_a_consistent_win():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(2000) ** 2
    assert dm_pvalue(reference * 0.9, reference, 1) < 1e-6  # lower on every window
    noise = reference + rng.standard_normal(2000)
    assert dm_pvalue(noise - 0.01, noise, 1) < 1e-6  # a constant edge is certain however small
    noisy = noise - 0.01 + rng.standard_normal(2000)  # the same edge buried in per-window noise
    assert 0.3 < dm_pvalue(noisy, noise, 1) < 1.0
    assert dm_pvalue(noise, noise, 1) == 1.0  # identical forecasts: no evidence
    assert dm_pvalue(noise + 0.01, noise, 1) > 0.99


def test_no_skill_model_collapses_to_persistence(eth):
    """Real features, real targets shuffled in time with random signs: nothing to learn."""
    span = Candle.objects.filter(market=eth, interval_s=60).aggregate(Min("start"), Max("start"))
    ds = build_dataset(compute_features(eth, 60, span["start__min"], span["start__max"]), 1)
    rng = np.random.default_rng(0)
    noise = Dataset(
        ds.interval_s, 1, ds.starts, ds.names, ds.X, ds.close, rng.permutation(ds.y) * rng.choice([-1, 1], len(ds))
    )
    bounds = fold_bounds(len(noise), 5, 0.5)
    y = noise.y[bounds[0] :]
    for algorithm in ALGORITHMS:
        wf = walk_forward(algorithm, noise, bounds, 1e-6)
        shrunk, raw = np.mean((y - wf.returns) ** 2), np.mean((y - wf.raw) ** 2)
        assert wf.shrink < 0.1 and np.abs(wf.returns).mean() < np.abs(wf.raw).mean() / 2
        assert shrunk < raw  # what the fitted noise would have cost without shrinkage
    outcome = train(noise, None, 0.0, 0.05, 5, 0.5)
    assert not outcome.promote and outcome.forecaster.shrink < 0.1


def test_too_little_data_says_how_much_is_needed(tmp_path, db):
    short = tmp_path / "short.csv"
    with gzip.open(BINANCE_ETH_1M, "rt") as f:
        short.write_text("".join(f.readlines()[:301]))
    run("import_candles", str(short), "--market", ETH, "--interval", "1m")
    with pytest.raises(CommandError, match=r"too little data to train: 239 60s windows .* need at least 500"):
        run("train", "--market", ETH)


BAD = [
    (["--market", "binance:DOGE-USDT"], "--market: unknown market 'binance:DOGE-USDT'"),
    (["--market", "nonsense"], "--market: ill-formed market"),
    (["--market", ETH, "--interval", "1x"], "--interval: invalid duration '1x'"),
]


def test_bad_arguments(eth):
    for args, message in BAD:
        with pytest.raises(CommandError, match=message):
            run("train", *args)


def test_market_without_candles(db):
    from markets.names import get_or_create_market

    get_or_create_market("kraken:ETH-USD")
    with pytest.raises(CommandError, match="kraken:ETH-USD: no 10s candles stored yet"):
        run("train", "--market", "kraken:ETH-USD")
