"""One "Last" on every page, the last trade's price; each prediction says which window it is for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.formatting import window
from web.tests.test_pages import T0, candle, predict

pytestmark = pytest.mark.django_db


def test_last_is_the_last_trade_and_predictions_name_their_window(client, market):
    candle(market, T0, "2223.23")
    candle(market, T0 + timedelta(seconds=10), "2223.55")
    prediction = predict(market, T0 + timedelta(seconds=20), "2223.55", "2226.68")
    assert window(prediction) == "close at 06:00:30, made 06:00:20"
    for path in ("/", "/markets/gemini:ETH-USD/"):
        page = client.get(path).content.decode()
        assert "Last trade" in page and "Last price" not in page and ">Last<" not in page
        assert 'data-field="last-price">2,223.55<' in page  # the newest candle's close: its last trade
        assert 'data-field="target-time">close at 06:00:30, made 06:00:20<' in page
    script = (client.get("/static/web/market.js").getvalue()).decode()
    assert 'title: "last trade"' in script  # the chart's final candle is labelled as the same "Last trade"
