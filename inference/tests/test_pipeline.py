"""Predictions at every candle close, scoring, caching and hot reload, driven by real replays."""

from __future__ import annotations

import gzip
from datetime import timedelta

import pytest

from features.models import FeatureRow
from inference import serving
from inference.models import Prediction
from markets.models import Candle
from modeling import registry
from modeling.forecast import PERSISTENCE
from modeling.market_training import train_horizons
from modeling.registry import load_forecaster
from pipeline.entry import replay
from testsupport.data import KRAKEN_ETH

from .conftest import train_model

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("horizon", [1, 3, 6])
def test_persistence_served_and_scored_at_every_horizon_without_a_model(market, parts, horizon):
    replay(parts[0], market)

    rows = list(FeatureRow.objects.filter(market=market).order_by("start"))
    predictions = list(Prediction.objects.filter(market=market, horizon=horizon).order_by("made_at"))
    assert len(rows) > 50
    assert [p.made_at for p in predictions] == [r.start + timedelta(seconds=10) for r in rows]
    closes = {c.start: c.close for c in Candle.objects.filter(market=market, final=True)}
    for p in predictions:
        assert (p.algorithm, p.model_id) == (PERSISTENCE, None)
        assert p.price == p.lower == p.upper == p.base_close == closes[p.made_at - timedelta(seconds=10)]
        assert p.target_time == p.made_at + timedelta(seconds=10 * horizon)
        assert p.latency_ms >= 0
        # Every prediction whose target window has closed is scored with that window's close.
        assert p.realized == closes.get(p.target_time - timedelta(seconds=10))
    # The newest `horizon` predictions aim past the replayed trades; every earlier one is scored.
    assert [p.realized is None for p in predictions[-horizon - 1 :]] == [False] + [True] * horizon


def test_next_replay_scores_predictions_left_open(market, parts):
    replay(parts[0], market)
    last = Prediction.objects.filter(market=market).latest("made_at")
    assert last.realized is None  # its target window is in the next part

    replay(parts[1], market)
    last.refresh_from_db()
    target = Candle.objects.get(market=market, start=last.target_time - timedelta(seconds=10))
    assert last.realized == target.close and last.scored_at is not None


def test_hot_reload_promotion_rollback_and_retirement_apply_at_the_next_candle(market, parts):
    def replay_served_by(part) -> set:
        before = Prediction.objects.filter(market=market, horizon=1).count()
        replay(part, market)
        new = Prediction.objects.filter(market=market, horizon=1).order_by("made_at")[before:]
        return {(p.model_id, p.algorithm) for p in new}

    assert replay_served_by(parts[0]) == {(None, PERSISTENCE)}
    v1 = train_model(market)
    registry.promote(v1, reason="test")
    assert replay_served_by(parts[1]) == {(v1.pk, "ridge")}
    v2 = train_model(market)
    registry.promote(v2, reason="test")
    assert replay_served_by(parts[2]) == {(v2.pk, "ridge")}
    registry.rollback(market, 10, 1)
    assert replay_served_by(parts[3]) == {(v1.pk, "ridge")}
    registry.retire(v1, reason="test")
    assert replay_served_by(parts[4]) == {(None, PERSISTENCE)}


def test_model_predictions_equal_the_forecaster_on_the_stored_rows(market, parts):
    replay(parts[0], market)
    artifact = train_model(market)
    registry.promote(artifact, reason="test")
    replay(parts[1], market)

    forecaster = load_forecaster(artifact)
    rows = {r.start + timedelta(seconds=10): r for r in FeatureRow.objects.filter(market=market)}
    served = Prediction.objects.filter(market=market, model=artifact)
    assert served.count() > 50
    for p in served:
        assert (p.algorithm, p.model_version) == ("ridge", artifact.version)
        price, lower, upper = forecaster.predict_row(rows[p.made_at].close, rows[p.made_at].values)
        assert (p.price, p.lower, p.upper) == (price, lower, upper)
        assert lower <= price <= upper


def test_a_model_for_other_features_is_not_used(market, parts, caplog):
    replay(parts[0], market)
    artifact = train_model(market)
    artifact.feature_version = "other"
    artifact.save()
    registry.promote(artifact, reason="test")
    replay(parts[1], market)
    assert not Prediction.objects.filter(market=market, model__isnull=False).exists()
    assert "wants features other" in caplog.text


def test_replaying_known_windows_keeps_the_first_predictions(market, parts):
    replay(parts[0], market)
    before = list(Prediction.objects.filter(market=market).values_list("made_at", "price", "model_id"))
    replay(parts[0], market)  # duplicates only: nothing new closes
    after = list(Prediction.objects.filter(market=market).values_list("made_at", "price", "model_id"))
    assert after == before


def test_late_trades_rescore_the_predictions_of_their_windows(market, tmp_path):
    with gzip.open(KRAKEN_ETH, "rt") as f:
        header, *rows = f.readlines()
    late = rows[20:600:7]  # withheld, then delivered after their windows closed
    (tmp_path / "on_time.csv").write_text(header + "".join(r for r in rows[:600] if r not in late))
    (tmp_path / "late.csv").write_text(header + "".join(late))
    replay(tmp_path / "on_time.csv", market)
    scored = {p.pk: p.realized for p in Prediction.objects.filter(market=market).exclude(realized=None)}

    replay(tmp_path / "late.csv", market)
    closes = {c.start: c.close for c in Candle.objects.filter(market=market, final=True)}
    predictions = list(Prediction.objects.filter(market=market).exclude(realized=None))
    assert len(predictions) == len(scored) > 100
    for p in predictions:
        assert p.realized == closes[p.target_time - timedelta(seconds=10)]
    assert sum(p.realized != scored[p.pk] for p in predictions) > 10  # not vacuous: closes really changed


def test_persistence_is_served_in_the_band_of_each_horizons_latest_training(market, parts, settings):
    for part in parts[:3]:
        replay(part, market)
    settings.TRAIN_MIN_ROWS = 50
    for artifact in train_horizons(market, window_s=6 * 3600):
        if artifact.status == "active":  # persistence is what is served without an active model
            registry.retire(artifact, "test")
    made = Prediction.objects.filter(market=market).count()

    for part in parts[3:]:
        replay(part, market)
    bands = {h: serving.served_persistence(market, 10, h) for h in (1, 3, 6)}
    assert bands[1].q_hi < bands[6].q_hi  # each horizon its own band: wider further ahead
    rows = {r.start: r for r in FeatureRow.objects.filter(market=market)}
    new = list(Prediction.objects.filter(market=market).order_by("made_at")[made:])
    # Rows of a window a later part amended were computed again after their prediction.
    unchanged = [(p, rows[p.made_at - timedelta(seconds=10)]) for p in new]
    unchanged = [(p, row) for p, row in unchanged if row.close == p.base_close]
    assert len(unchanged) > 120
    assert {p.horizon for p, _ in unchanged} == {1, 3, 6}
    for p, row in unchanged:
        assert (p.algorithm, p.model_id, p.price) == (PERSISTENCE, None, row.close)
        assert p.lower < p.price < p.upper
        assert (p.lower, p.upper) == bands[p.horizon].predict_row(row.close, row.values)[1:]
