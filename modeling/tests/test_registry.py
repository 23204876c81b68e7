"""Registry: hot reload of the served model, safe loading, admin actions with an audit trail."""

from __future__ import annotations

import collections
import gc
import logging
import weakref
from decimal import Decimal

import pytest
import skops.io as sio
from django.contrib.auth import get_user_model

from features.models import FeatureRow
from inference import serving
from modeling import registry, serialization
from modeling.models import ModelArtifact, ModelEvent
from modeling.services import train_market


@pytest.fixture
def two_models(eth, settings) -> tuple[ModelArtifact, ModelArtifact]:
    settings.PROMOTION_MARGIN = 0.9  # both stay rejected: the test decides what is active
    return train_market(eth, window_s=12 * 3600), train_market(eth)


def test_served_model_follows_promotions_and_rollbacks(eth, two_models):
    a, b = two_models
    assert serving.get_served_model(eth, 60, 1) is None  # persistence
    registry.promote(a, "test")
    served = serving.get_served_model(eth, 60, 1)
    assert (served.artifact_id, served.version, served.algorithm) == (a.pk, a.version, a.algorithm)
    row = FeatureRow.objects.filter(market=eth).order_by("-start").first()
    price, lower, upper = served.predict(row)
    assert all(isinstance(v, Decimal) for v in (price, lower, upper))
    assert lower < price < upper and abs(price - row.close) / row.close < Decimal("0.01")

    registry.promote(b, "test")  # as another process (the admin) would: picked up at the next call
    assert serving.get_served_model(eth, 60, 1).artifact_id == b.pk
    a.refresh_from_db()
    assert a.status == "retired"

    assert registry.rollback(eth, 60, 1).pk == a.pk
    assert serving.get_served_model(eth, 60, 1).artifact_id == a.pk
    registry.retire(a, "test")
    assert serving.get_served_model(eth, 60, 1) is None
    actions = list(ModelEvent.objects.filter(artifact=a).order_by("at").values_list("action", "to_status"))
    assert actions == [
        ("gate", "rejected"),
        ("promote", "active"),
        ("promote", "retired"),
        ("rollback", "active"),
        ("retire", "retired"),
    ]


def test_tampered_artifact_is_refused_and_logged(eth, two_models, caplog):
    a, _ = two_models
    data = bytearray(a.artifact)
    data[len(data) // 2] ^= 0xFF
    ModelArtifact.objects.filter(pk=a.pk).update(artifact=bytes(data))
    a.refresh_from_db()
    with pytest.raises(serialization.ArtifactError, match="sha256 mismatch"):
        registry.promote(a, "test")  # never activated
    ModelArtifact.objects.filter(pk=a.pk).update(status="active")  # e.g. tampered after promotion
    with caplog.at_level(logging.ERROR, logger="modeling.serialization"):
        assert serving.get_served_model(eth, 60, 1) is None
    assert f"refusing model {a.pk}" in caplog.text and "sha256 mismatch" in caplog.text


def test_untrusted_types_are_never_loaded():
    data, digest = serialization.dump({"model": collections.Counter(), "features": []})
    with pytest.raises(serialization.ArtifactError, match=r"collections\.Counter"):
        serialization.load(data, digest)
    assert sio.get_untrusted_types(data=data) == ["collections.Counter"]


def test_admin_actions_are_audited(eth, two_models, client):
    a, b = two_models
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    url = "/admin/modeling/modelartifact/"
    listing = client.get(url + "?status__exact=rejected")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert f"{a.metrics['model']['rmse_bps']:.2f} / {a.metrics['persistence']['rmse_bps']:.2f}" in page  # in bp
    assert "| cryptopred admin</title>" in page

    client.post(url, {"action": "promote", "_selected_action": [a.pk]})
    client.post(url, {"action": "promote", "_selected_action": [b.pk]})
    assert serving.get_served_model(eth, 60, 1).artifact_id == b.pk
    response = client.post(url, {"action": "rollback", "_selected_action": [b.pk]}, follow=True)
    assert response.status_code == 200
    assert serving.get_served_model(eth, 60, 1).artifact_id == a.pk
    events = ModelEvent.objects.filter(actor=admin)
    assert events.filter(action="promote").count() == 3  # a, a retired by b, b
    assert events.filter(action="rollback").count() == 2
    # Errors are messages, not tracebacks.
    response = client.post(url, {"action": "retire", "_selected_action": [b.pk]}, follow=True)
    assert "already retired" in response.content.decode()


def test_model_page_is_read_only_with_status_buttons_audited_like_the_actions(eth, two_models, client):
    a, b = two_models
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    page = client.get(f"/admin/modeling/modelartifact/{b.pk}/change/").content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page  # nothing to save
    assert "deletelink" not in page and f"/{b.pk}/delete/" not in page
    assert "cryptopred admin" in page and "Django administration" not in page
    for action in ("promote", "rollback", "retire"):
        assert f'formaction="/admin/modeling/modelartifact/{b.pk}/change-status/{action}/"' in page

    response = client.post(f"/admin/modeling/modelartifact/{a.pk}/change-status/promote/", follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/modeling/modelartifact/{a.pk}/change/"
    client.post(f"/admin/modeling/modelartifact/{b.pk}/change-status/promote/")
    assert serving.get_served_model(eth, 60, 1).artifact_id == b.pk
    client.post(f"/admin/modeling/modelartifact/{b.pk}/change-status/rollback/")
    assert serving.get_served_model(eth, 60, 1).artifact_id == a.pk
    events = ModelEvent.objects.filter(actor=admin)
    assert events.filter(action="promote", reason=f"promoted by {admin}").count() == 2  # as the list action says
    assert events.filter(action="rollback").count() == 2
    response = client.post(f"/admin/modeling/modelartifact/{b.pk}/change-status/retire/", follow=True)
    assert "already retired" in response.content.decode()
    assert client.get(f"/admin/modeling/modelartifact/{b.pk}/change-status/retire/").status_code == 405
    assert client.post(f"/admin/modeling/modelartifact/{b.pk}/change-status/delete/").status_code == 403


def test_served_persistence_is_the_latest_run_band_and_leaves_no_garbage(eth, two_models):
    band = serving.served_persistence(eth, 60, 1)
    q_lo, q_hi, floor = two_models[1].metrics["persistence"]["band"]
    assert (band.algorithm, band.model) == ("persistence", None)
    assert (band.q_lo, band.q_hi, band.scale_floor) == (q_lo, q_hi, floor)
    assert serving.served_persistence(eth, 10, 1) is None  # no run at that interval yet

    # Called at every candle close: it must not tie the caller's frame (a replay's whole
    # batch of trades) into a reference cycle that only the garbage collector frees.
    def caller() -> weakref.ref:
        batch = collections.UserList(range(10))
        serving.served_persistence(eth, 60, 1)
        return weakref.ref(batch)

    enabled = gc.isenabled()
    gc.disable()
    try:
        assert caller()() is None
    finally:
        if enabled:
            gc.enable()
