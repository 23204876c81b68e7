"""Challengers in shadow: scored live next to the champion, never served, promoted from the admin."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client, override_settings

from inference.models import Prediction
from markets.models import Market
from markets.names import get_or_create_market
from modeling.market_training import train_market
from modeling.models import ModelArtifact, ModelEvent
from modeling.training import dm_pvalue
from monitoring import challengers
from monitoring.models import ShadowPrediction
from pipeline.entry import replay

pytestmark = pytest.mark.django_db
GEMINI_DAY = Path(__file__).resolve().parents[2] / "data" / "sample" / "gemini_ETHUSD_trades_2021-07-01.csv.gz"


def direct(rows: list[tuple]) -> dict:
    """RMSE, MAE, direction and coverage of (price, lower, upper, base, realized) rows, computed here."""
    price, lower, upper, base, actual = np.array(rows, dtype=float).T
    err = price - actual
    moved = actual != base
    hit = np.where(price == base, 0.5, np.sign(price - base) == np.sign(actual - base))
    banded = lower < upper
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "directional_accuracy": float(np.mean(hit[moved])),
        "coverage_80": float(np.mean(((lower <= actual) & (actual <= upper))[banded])),
        "persistence_rmse": float(np.sqrt(np.mean((base - actual) ** 2))),
    }


def hours_of(source: Path, dest: Path, first_h: int, last_h: int) -> Path:
    """The trades of a real day file from hour first_h to hour last_h (UTC)."""
    with gzip.open(source, "rt") as f:
        header, *lines = f.readlines()
    keep = [line for line in lines if first_h <= int(line[11:13]) < last_h]
    dest.write_text(header + "".join(keep))
    return dest


@pytest.fixture(scope="module")
def shadowed_once(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[tuple[int, int, int]]:
    """Six hours of a real day, a model trained on them and rejected, then the next four hours: committed once for
    the tests of this module (each one's changes roll back with its transaction). (market id, challenger id,
    predictions served at its horizon before it was trained)."""
    directory = tmp_path_factory.mktemp("shadowed")
    # Rejected whatever its numbers: it becomes a challenger.
    with django_db_blocker.unblock(), override_settings(PROMOTION_SIGNIFICANCE=0.0, LIVE_METRICS_WINDOW=1000):
        market = get_or_create_market("shadow:ETH-USD")
        replay(hours_of(GEMINI_DAY, directory / "first.csv", 0, 6), market)
        challenger = train_market(market, window_s=6 * 3600)
        served_before = Prediction.objects.filter(market=market, horizon=challenger.horizon).count()
        replay(hours_of(GEMINI_DAY, directory / "rest.csv", 6, 10), market)
    yield market.pk, challenger.pk, served_before
    with django_db_blocker.unblock():
        Market.objects.filter(pk=market.pk).delete()  # with its predictions, models and shadow predictions


@pytest.fixture
def shadowed(shadowed_once, db, settings) -> tuple[Market, ModelArtifact, int]:
    settings.LIVE_METRICS_WINDOW = 1000
    market, challenger, served_before = shadowed_once
    challenger = ModelArtifact.objects.get(pk=challenger)
    assert challenger.status == ModelArtifact.Status.REJECTED
    return Market.objects.get(pk=market), challenger, served_before


def test_challenger_is_scored_in_shadow_and_never_served(shadowed):
    market, challenger, served_before = shadowed
    shadow = ShadowPrediction.objects.filter(artifact=challenger)
    served = Prediction.objects.filter(market=market, horizon=challenger.horizon)
    new_windows = served.count() - served_before
    assert (
        shadow.count() == new_windows >= 1440
    )  # four hours of 10-s windows  # every window served after it was trained, in shadow too
    assert not shadow.filter(made_at__lte=challenger.train_end).exists()
    # The same windows as the predictions served after it was trained (all after its training data).
    served_after = served.order_by("made_at").values_list("made_at", flat=True)[served_before:]
    assert set(shadow.values_list("made_at", flat=True)) == set(served_after)
    assert shadow.exclude(realized=None).count() == shadow.count() - 1  # the last target has not closed
    # Serving never saw it: persistence served every window.
    assert not served.filter(model=challenger).exists()
    assert set(served.values_list("algorithm", flat=True)) == {"persistence"}
    # Its predictions are its own: the model's, not persistence's.
    assert shadow.exclude(price=F("base_close")).exists()


def test_challenger_live_metrics_equal_a_direct_computation(shadowed):
    market, challenger, _ = shadowed
    live = challengers.live_metrics(challenger)
    newest = ShadowPrediction.objects.filter(artifact=challenger).exclude(realized=None).order_by("-made_at")[:1000]
    rows = list(newest.values_list("price", "lower", "upper", "base_close", "realized"))
    expected = direct(rows)
    assert live["count"] == 1000
    for key in ("rmse", "mae", "directional_accuracy", "coverage_80"):
        assert live["model"][key] == pytest.approx(expected[key], rel=1e-12), key
    assert live["persistence"]["rmse"] == pytest.approx(expected["persistence_rmse"], rel=1e-12)

    # Next to the champion (persistence served) on the same windows, with the gate's test.
    compared = challengers.compare(challenger)
    served = {
        made_at: (price, realized)
        for made_at, price, realized in Prediction.objects.filter(
            market=market, horizon=challenger.horizon, realized__isnull=False
        ).values_list("made_at", "price", "realized")
    }
    both = [(m, p, served[m]) for m, p in newest.values_list("made_at", "price") if m in served]
    both.sort()
    challenger_price = np.array([float(p) for _, p, _ in both])
    champion_price = np.array([float(s[0]) for _, _, s in both])
    actual = np.array([float(s[1]) for _, _, s in both])
    assert compared["windows"] == len(both) == 1000
    assert compared["champion_served_by"] == ["persistence"]
    assert compared["challenger"]["rmse"] == pytest.approx(np.sqrt(np.mean((challenger_price - actual) ** 2)))
    assert compared["champion"]["rmse"] == pytest.approx(np.sqrt(np.mean((champion_price - actual) ** 2)))
    assert compared["champion"]["rmse"] == pytest.approx(compared["persistence"]["rmse"])
    expected_p = dm_pvalue((challenger_price - actual) ** 2, (champion_price - actual) ** 2, 1)
    assert compared["p_vs_champion"] == pytest.approx(expected_p)


def test_a_broken_challenger_never_disturbs_serving(settings, tmp_path):
    settings.PROMOTION_SIGNIFICANCE = 0.0
    market = get_or_create_market("brokenshadow:ETH-USD")
    replay(hours_of(GEMINI_DAY, tmp_path / "first.csv", 0, 6), market)
    challenger = train_market(market, window_s=6 * 3600)
    ModelArtifact.objects.filter(pk=challenger.pk).update(sha256="0" * 64)  # refused when loaded
    before = Prediction.objects.filter(market=market).count()
    replay(hours_of(GEMINI_DAY, tmp_path / "rest.csv", 6, 8), market)
    assert Prediction.objects.filter(market=market).count() >= before + 720  # two hours, all served
    assert not ShadowPrediction.objects.filter(artifact=challenger).exists()


def test_admin_shows_champion_and_challenger_and_promotes_it(shadowed):
    _market, challenger, _ = shadowed
    admin = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/monitoring/challenger/")
    assert listing.status_code == 200
    assert f"#{challenger.pk}" in listing.content.decode()
    page = client.get(f"/admin/monitoring/challenger/{challenger.pk}/change/")
    text = page.content.decode()
    assert page.status_code == 200
    compared = challengers.compare(challenger)
    for side in ("challenger", "champion", "persistence"):
        assert f"{compared[side]['rmse_bps']:.2f}" in text
    assert f"{compared['p_vs_champion']:.3g}" in text
    response = client.post(f"/admin/monitoring/challenger/{challenger.pk}/promote/")
    assert response.status_code == 302
    challenger.refresh_from_db()
    assert challenger.status == ModelArtifact.Status.ACTIVE
    event = ModelEvent.objects.get(artifact=challenger, action="promote challenger")
    assert event.actor == admin and "promoted from shadow by ops" in event.reason
    assert event.from_status == "rejected" and event.to_status == "active"
