"""The horizons table's live figures cover every served prediction, and its columns say so."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_live_columns_of_every_horizon_are_labelled_as_served(client, settings):
    from markets.models import Market

    settings.API_ANONYMOUS_READ = True
    Market.objects.create(exchange="gemini", base="ETH", quote="USD", symbol="ETHUSD", enabled=True)
    table = client.get("/markets/gemini:ETH-USD/horizons/").content.decode()
    assert 'Live RMSE (bp), as served <span class="muted">/ persistence (windows)</span>' in table
    assert "In 80 % interval, as served" in table and "model / persistence" not in table
