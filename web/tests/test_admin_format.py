"""The admin shows dates as every page does (ISO, 24-hour, UTC) and a model's metrics as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from markets.models import Market
from modeling.models import ModelArtifact

pytestmark = pytest.mark.django_db
T0 = datetime(2021, 7, 1, 18, 5, 9, tzinfo=UTC)


@pytest.fixture
def model() -> ModelArtifact:
    market = Market.objects.create(exchange="gemini", base="ETH", quote="USD", symbol="ETHUSD")
    artifact = ModelArtifact.objects.create(
        market=market, interval_s=10, horizon=1, feature_version="v1", algorithm="ridge", train_start=T0,
        train_end=T0 + timedelta(hours=6), artifact=b"-", sha256="0" * 64, status="candidate", version=1,
        metrics={"model": {"rmse_bps": 1.234567891, "windows": 120}, "persistence": {"rmse_bps": 1.5}, "gate": None},
    )  # fmt: skip
    ModelArtifact.objects.filter(pk=artifact.pk).update(created_at=T0)
    return artifact


def test_admin_dates_are_iso_24_hour_utc(admin_client, model):
    page = admin_client.get("/admin/modeling/modelartifact/").content.decode()
    assert "2021-07-01 18:05:09 UTC" in page
    assert "p.m." not in page and "July 1, 2021" not in page


def test_a_models_metrics_are_a_table_not_json(admin_client, model):
    page = admin_client.get(f"/admin/modeling/modelartifact/{model.pk}/change/").content.decode()
    assert '<table class="metrics">' in page
    assert '<th scope="row">model.rmse_bps</th><td>1.23457</td>' in page
    assert '<th scope="row">model.windows</th><td>120</td>' in page
    assert '<th scope="row">gate</th><td>null</td>' in page
    assert "&quot;rmse_bps&quot;" not in page and '"rmse_bps"' not in page  # no JSON blob
    assert "2021-07-01 18:05:09 UTC" in page  # train_start, read-only
