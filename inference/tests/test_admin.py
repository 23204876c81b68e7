"""The admin's prediction list shows each market's live metrics, from inference.metrics."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from inference.metrics import live_metrics
from pipeline.entry import replay

pytestmark = pytest.mark.django_db


def test_prediction_changelist_shows_live_metrics(market, parts, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        replay(parts[0], market)
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(admin)
    response = client.get("/admin/inference/prediction/")
    assert response.status_code == 200
    page = response.content.decode()
    served = live_metrics(market)["served"]
    assert "Live metrics" in page and "kraken:ETH-USD" in page
    assert f"<td>{served['count']:,}</td>" in page
    assert f"<td>{served['model']['rmse_bps']:.2f}</td>" in page  # errors in basis points
    assert served["since"][:19].replace("T", " ") in page  # what the figures cover
    # Persistence before any training run had no band: never an 80 % coverage.
    assert served["interval_rows"] == 0 and "no interval yet" in page
    assert client.get("/admin/inference/prediction/add/").status_code == 403  # written by the pipeline only
