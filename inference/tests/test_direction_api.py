"""Predictions of the mid with the direction forecast: stored, scored, served by REST, websocket and admin."""

from __future__ import annotations

import asyncio
import gzip
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from rest_framework.test import APIClient
from websockets.asyncio.client import connect

from core.formatting import up_percent
from inference.models import Prediction
from markets.models import BookWindow
from markets.names import get_or_create_market
from modeling.direction import MODEL_NAMES
from modeling.market_training import train_market
from pipeline.entry import replay, replay_book
from testsupport.data import BITSTAMP_BOOK, BITSTAMP_TRADES

from .test_websocket import ask, receive

pytestmark = pytest.mark.django_db
MARKET = "bitstamp:BTC-USD"
BASE = f"/api/v1/markets/{MARKET}"
SPLIT = "2015-05-01T02:00:00"  # trades before: history to train on; after: replayed with a trained model
FIELDS = {"target", "p_up", "p_move", "direction_source", "direction_model", "p_up_base"}


def trades_part(directory, after: bool):
    """The Bitstamp trades before (or from) SPLIT, as a file of their own."""
    with gzip.open(BITSTAMP_TRADES, "rt") as f:
        header, *rows = f.readlines()
    part = directory / ("late.csv" if after else "early.csv")
    part.write_text(header + "".join(r for r in rows if (r[:19] >= SPLIT) == after))
    return part


@pytest.fixture
def trained(tmp_path, settings, one_horizon):
    """Book and the first two hours of trades replayed, a model trained on them (target mid)."""
    settings.TRAIN_MIN_ROWS = 300
    market = get_or_create_market(MARKET)
    replay_book(BITSTAMP_BOOK, market)
    replay(trades_part(tmp_path, after=False), market)
    artifact = train_market(market, window_s=7200)
    assert artifact.target == "mid" and artifact.direction_model in MODEL_NAMES
    return market, artifact


def test_predictions_of_the_mid_carry_the_direction_and_are_scored_on_the_mid(trained, tmp_path):
    market, artifact = trained
    before = set(Prediction.objects.filter(market=market).values_list("pk", flat=True))
    assert not Prediction.objects.filter(pk__in=before).exclude(direction_source="").exists()  # nothing trained yet
    replay(trades_part(tmp_path, after=True), market)
    # The trained horizon's (the others have no training run, so no direction forecast yet).
    made = Prediction.objects.filter(market=market, horizon=artifact.horizon).exclude(pk__in=before).order_by("made_at")
    assert made.count() > 300
    mids = dict(BookWindow.objects.filter(market=market).values_list("start", "mid"))
    period = timedelta(seconds=10)
    for p in made:
        assert p.target == "mid" and p.base_close == mids[p.made_at - period]
        assert 0 < p.p_up < 1 and 0 < p.p_move < 1 and p.p_up_base == artifact.metrics["direction"]["base"]["up"]
        assert (p.direction_source, p.direction_model) == (artifact.direction_source, artifact.direction_model)
        if p.realized is not None:
            assert p.realized == mids[p.target_time - period]  # scored against the mid, not the close
    assert made.exclude(realized=None).count() > 300
    if artifact.direction_source == "model":
        assert len({p.p_up for p in made}) > 100  # the model's, per window
    else:
        assert {p.p_up for p in made} == {p.p_up_base}


def counted_direction(market, horizon: int) -> tuple[int, float]:
    """Moved windows and accuracy of the served P(up), counted here from the stored predictions."""
    newest = Prediction.objects.filter(market=market, horizon=horizon, target="mid", realized__isnull=False)
    called = [
        p
        for p in newest.order_by("-made_at")[: settings.LIVE_METRICS_WINDOW]
        if p.p_up is not None and p.p_up_base is not None and p.realized != p.base_close
    ]
    right = sum(0.5 if p.p_up == 0.5 else (p.p_up > 0.5) == (p.realized > p.base_close) for p in called)
    return len(called), right / len(called)


@override_settings(API_ANONYMOUS_READ=True)
def test_rest_and_admin_carry_the_direction(trained, tmp_path):
    market, artifact = trained
    replay(trades_part(tmp_path, after=True), market)
    client = APIClient()
    latest = client.get(f"{BASE}/predictions/latest/").json()
    assert FIELDS <= set(latest) and latest["target"] == "mid"
    assert latest["direction_source"] == artifact.direction_source and 0 < latest["p_up"] < 1
    assert latest["direction_model"] == artifact.direction_model
    history = client.get(f"{BASE}/predictions/?limit=5").json()["results"]
    assert all(FIELDS <= set(p) for p in history)
    metrics = client.get(f"{BASE}/metrics/").json()
    assert metrics["target"] == "mid"
    direction = metrics["served"]["direction"]
    moved, accuracy = counted_direction(market, metrics["horizon"])
    assert direction["moved_rows"] == moved > 100 and direction["accuracy"] == pytest.approx(accuracy)
    assert {"base_rate_accuracy", "brier", "brier_reference", "log_loss", "log_loss_reference"} <= set(direction)
    model = client.get(f"/api/v1/models/{artifact.pk}/").json()
    assert (model["target"], model["direction_source"]) == ("mid", artifact.direction_source)
    assert model["direction_model"] == artifact.direction_model

    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/admin/inference/prediction/").content.decode()
    assert "P(up) calls right" in page and f"{100 * direction['accuracy']:.1f} %" in page
    assert f"{100 * direction['base_rate_accuracy']:.1f} %" in page
    page = browser.get("/admin/modeling/modelartifact/").content.decode()
    assert "P(up) Brier vs base rate" in page and f"{artifact.direction_model} · " in page

    page = browser.get("/models/").content.decode()
    assert f'P(up) from</span> <span data-field="direction-model">{artifact.direction_model}</span>' in page

    # The market page: "▲ up P(up) 64 %" in the direction row, the calls' live accuracy next to the base rate's.
    page = browser.get(f"/markets/{MARKET}/").content.decode()
    shown = f'P(up) {up_percent(latest["p_up"])} %</span> <span class="muted">· {artifact.direction_model}</span>'
    assert shown in page
    assert f'<span data-direction="accuracy">{100 * direction["accuracy"]:.1f} %</span>' in page
    assert f'<span data-direction="base_rate_accuracy">{100 * direction["base_rate_accuracy"]:.1f} %</span>' in page


@override_settings(API_ANONYMOUS_READ=True)
@pytest.mark.django_db(transaction=True)  # the server's threads read what the replay stores
def test_websocket_pushes_carry_the_direction(trained, tmp_path, server):
    market, artifact = trained
    late = trades_part(tmp_path, after=True)

    async def scenario():
        async with connect(server.ws_url()) as ws:
            subscribe = {"action": "subscribe", "channel": "predictions", "market": MARKET}
            assert (await ask(ws, subscribe))["type"] == "subscribed"
            await database_sync_to_async(replay)(late, market)
            pushed = await receive(ws)
            assert pushed["type"] == "prediction" and FIELDS <= set(pushed)
            assert pushed["target"] == "mid" and pushed["direction_source"] == artifact.direction_source
            assert pushed["direction_model"] == artifact.direction_model
            stored = await database_sync_to_async(
                Prediction.objects.filter(market=market, made_at=pushed["made_at"], horizon=pushed["horizon"]).get
            )()
            assert pushed["p_up"] == stored.p_up and pushed["p_move"] == stored.p_move

    asyncio.run(scenario())


def test_served_direction_follows_the_newest_decisive_run(settings):
    """A P(up) model that passed its gate stays served through an inconclusive run, not past a losing one."""
    from inference.serving import served_direction

    settings.TRAIN_MIN_ROWS = 300
    market = get_or_create_market(MARKET)
    replay_book(BITSTAMP_BOOK, market)
    replay(BITSTAMP_TRADES, market)
    passed = train_market(market, window_s=3 * 3600)  # the whole 3 hours: the book calls the next mid
    assert passed.direction_source == "model", passed.metrics["direction"]["up"]["reason"]
    later = train_market(market, window_s=2 * 3600)  # the last 2 hours alone
    # As if that run had found its best candidate better than the base rate, not significantly.
    later.metrics["direction"]["up"] |= {"source": "base rate", "loses": False}
    later.save(update_fields=["metrics"])
    inconclusive = later

    served = served_direction(market, 10, 1, "v2", "mid")
    assert served.source == "model" and served.up_base == inconclusive.metrics["direction"]["base"]["up"]
    assert served.model_name == passed.direction_model != "base rate"  # the kept run's candidate
    row = market.feature_rows.order_by("-start").first()
    assert served.predict(row.values)[0] != served.up_base  # the kept model's probability, not the base rate

    inconclusive.metrics["direction"]["up"]["loses"] = True  # as if that run had found it no better
    inconclusive.save(update_fields=["metrics"])
    served = served_direction(market, 10, 1, "v2", "mid")
    assert served.source == served.model_name == "base rate" and served.predict(row.values)[0] == served.up_base
    assert served_direction(market, 10, 1, "v2", "close") is None  # no run of that target yet
