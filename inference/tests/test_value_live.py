"""The live timing value of the served P(up): REST metrics, market and models pages, /metrics; against plain Python."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from rest_framework.test import APIClient

from core.formatting import bps, percent
from inference.models import Prediction
from markets.models import BookWindow
from modeling import registry
from monitoring import collector
from pipeline.entry import replay
from testsupport.scrape import parse, value

from .test_direction_api import BASE, MARKET, trades_part, trained  # noqa: F401 (trained is a fixture)

pytestmark = pytest.mark.django_db
WINDOW = 200


def direct_timing(market, horizon: int) -> dict:
    """The newest WINDOW scored predictions at horizon, one at a time, against the stored book."""
    book = {
        w.start: (float(w.bid_price), float(w.ask_price), float(w.mid), w.microprice > w.mid)
        for w in BookWindow.objects.filter(market=market, interval_s=market.interval_s)
    }
    period = timedelta(seconds=market.interval_s)
    scored = Prediction.objects.filter(market=market, horizon=horizon, realized__isnull=False).order_by("-made_at")
    sums = dict.fromkeys(("buy_bps", "sell_bps", "rule_buy_bps", "rule_sell_bps"), 0.0)
    n = 0
    for p in scored[:WINDOW]:
        now, later = book.get(p.made_at - period), book.get(p.target_time - period)
        if p.p_up is None or now is None or later is None:
            continue
        n += 1
        bid, ask, mid, micro_up = now
        save_buy, gain_sell = (ask - later[1]) / mid * 1e4, (later[0] - bid) / mid * 1e4
        if p.p_up > 0.5:
            sums["sell_bps"] += gain_sell
        else:
            sums["buy_bps"] += save_buy
        if micro_up:
            sums["rule_sell_bps"] += gain_sell
        else:
            sums["rule_buy_bps"] += save_buy
    return {"decisions": n} | {k: v / n for k, v in sums.items()}


def direct_rule_accuracy(market, horizon: int) -> float:
    """The microprice rule's calls (up exactly when microprice > mid) on the newest WINDOW scored predictions
    with a P(up) whose target moved and whose book at made_at is known."""
    book = {w.start: w.microprice > w.mid for w in BookWindow.objects.filter(market=market)}
    period = timedelta(seconds=market.interval_s)
    scored = Prediction.objects.filter(market=market, horizon=horizon, realized__isnull=False).order_by("-made_at")
    right = [
        book[p.made_at - period] == (p.realized > p.base_close)
        for p in scored[:WINDOW]
        if p.p_up is not None and p.realized != p.base_close and p.made_at - period in book
    ]
    assert len(right) > 50
    return sum(right) / len(right)


@override_settings(API_ANONYMOUS_READ=True, LIVE_METRICS_WINDOW=WINDOW)
def test_live_timing_value_in_the_api_pages_and_metrics(trained, tmp_path, monkeypatch):  # noqa: F811
    market, artifact = trained
    if artifact.status != artifact.Status.ACTIVE:
        registry.promote(artifact, reason="test")  # served, so the models page has its live figures
    replay(trades_part(tmp_path, after=True), market)
    h = artifact.horizon
    expected = direct_timing(market, h)
    assert expected["decisions"] > 150

    metrics = APIClient().get(f"{BASE}/metrics/?horizon={h}").json()
    served = metrics["served"]["value"]["timing"]
    for key, number in expected.items():
        assert served[key] == pytest.approx(number, rel=1e-9, abs=1e-12), key
    assert {"wait_buy_bps", "oracle_buy_bps", "captured", "rule_captured"} <= set(served)
    rule_accuracy = metrics["served"]["direction"]["rule_accuracy"]
    assert rule_accuracy == pytest.approx(direct_rule_accuracy(market, h), rel=1e-12)
    by_model = {g["served_by"]["id"]: g["value"]["timing"] for g in metrics["models"]}
    assert by_model[artifact.pk]["decisions"] > 0

    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com", "pw"))
    page = browser.get(f"/markets/{MARKET}/?horizon={h}").content.decode()
    fragment = browser.get(f"/markets/{MARKET}/accuracy/?horizon={h}").content.decode()
    for html in (page, fragment):
        # One card: the calls' accuracy next to the rule's and the base rate's, and their timing value.
        card = html.split('<div id="direction-record">', 1)[1].split('<div id="accuracy"', 1)[0]
        for key in ("buy_bps", "sell_bps", "rule_buy_bps", "rule_sell_bps"):
            assert f'<span data-timing="{key}">{bps(served[key])}</span>' in card, key
        direction = metrics["served"]["direction"]
        for key in ("accuracy", "rule_accuracy", "base_rate_accuracy"):
            assert f'<span data-direction="{key}">{percent(direction[key])}</span>' in card, key
        assert f"Timing: {served['decisions']:,} decisions" in card
    models_page = browser.get("/models/").content.decode()
    live = by_model[artifact.pk]
    assert f'<span data-timing="calls">{bps(live["buy_bps"])} / {bps(live["sell_bps"])}</span>' in models_page

    monkeypatch.setattr(collector, "_live", {})  # no live metrics cached by an earlier scrape in this process
    samples = parse(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())
    labels = {"market": MARKET, "horizon": str(h), "forecaster": "all"}
    for key in ("buy_bps", "sell_bps", "rule_buy_bps", "rule_sell_bps", "decisions"):
        assert value(samples, f"cryptopred_live_timing_{key}", **labels) == pytest.approx(expected[key], rel=1e-9)
