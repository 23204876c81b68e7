"""Registry: hot reload of the served model, safe loading, admin actions with an audit trail."""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from decimal import Decimal

import pytest
import skops.io as sio
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from features.engine import feature_version
from features.models import FeatureRow
from inference import serving
from markets.models import Market
from markets.names import get_or_create_market
from modeling import market_training, registry, serialization
from modeling.market_training import train_market
from modeling.models import ModelArtifact, ModelEvent
from modeling.tests.conftest import import_eth


@pytest.fixture(scope="module")
def trained(django_db_setup, django_db_blocker) -> Iterator[tuple[int, int, int]]:
    """ETH's two real days and two models trained on them: (market, model, model) ids, committed once for the
    tests of this module, whose own changes roll back with their transactions. Both models stay rejected: each
    test decides what is active."""
    with django_db_blocker.unblock(), override_settings(PROMOTION_MARGIN=0.9):
        market = import_eth()
        a, b = train_market(market, window_s=12 * 3600), train_market(market)
    yield market.pk, a.pk, b.pk
    with django_db_blocker.unblock():
        Market.objects.filter(exchange="binance").delete()  # with their candles, rows, models and events


@pytest.fixture
def eth(trained, db) -> Market:
    return Market.objects.get(pk=trained[0])


@pytest.fixture
def two_models(trained, db, monkeypatch) -> tuple[ModelArtifact, ModelArtifact]:
    monkeypatch.setattr(serving, "_loaded", {})  # as in a new process: the artifacts are the same in every test
    return ModelArtifact.objects.get(pk=trained[1]), ModelArtifact.objects.get(pk=trained[2])


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


def test_concurrent_creators_get_distinct_versions(transactional_db):
    """Two processes store an artifact of one series at once: the second waits for the first's version."""
    market = get_or_create_market("kraken:ETH-USD")  # a series of its own: the module's models are committed
    fields = {
        "market": market,
        "interval_s": 60,
        "horizon": 1,
        "feature_version": "v1",
        "algorithm": "ridge",
        "train_start": timezone.now(),
        "train_end": timezone.now(),
        "artifact": b"",
        "sha256": "0" * 64,
    }
    created, errors = [], []
    first_stored, release = threading.Event(), threading.Event()

    def create(hold: bool) -> None:
        try:
            with transaction.atomic():
                created.append(ModelArtifact.objects.create(**fields, version=registry.next_version(market, 60, 1)))
                if hold:  # the first creator's transaction stays open until the second is waiting
                    first_stored.set()
                    release.wait(30)
        except Exception as exc:
            errors.append(exc)
        finally:
            first_stored.set()
            connection.close()

    first = threading.Thread(target=create, args=(True,))
    first.start()
    first_stored.wait(30)
    second = threading.Thread(target=create, args=(False,))
    second.start()
    deadline = time.monotonic() + 30
    while waiting_backends() == 0 and second.is_alive():  # the second creator waits on the first's row or lock
        assert time.monotonic() < deadline, "the second creator neither waited nor finished"
        time.sleep(0.01)
    release.set()
    first.join(30)
    second.join(30)
    assert errors == []
    assert sorted(a.version for a in created) == [1, 2]


def waiting_backends() -> int:
    """Backends of this database waiting for a lock held by another."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]


def test_the_gate_judges_against_the_model_active_at_promotion(edge, settings, monkeypatch):
    """A model promoted while a candidate trains is the one the candidate must beat to replace it."""
    settings.PROMOTION_MARGIN = 0.0
    real_train = market_training.train
    rivals = []

    def train_while_another_is_promoted(ds, active, *args):
        outcome = real_train(ds, active, *args)
        assert active is None
        # Meanwhile another training promotes a model as good as this candidate: the same one.
        payload = outcome.forecaster.payload() | {"direction": outcome.direction.forecaster.payload()}
        data, digest = serialization.dump(payload)
        first, last = ds.span()
        rival = ModelArtifact.objects.create(
            market=edge,
            interval_s=ds.interval_s,
            horizon=ds.horizon,
            feature_version=feature_version(edge, ds.interval_s),
            target=ds.target,
            algorithm=outcome.forecaster.algorithm,
            train_start=first,
            train_end=last,
            artifact=data,
            sha256=digest,
            version=100,
        )
        registry.promote(rival, "trained elsewhere")
        rivals.append(rival)
        return outcome

    monkeypatch.setattr(market_training, "train", train_while_another_is_promoted)
    candidate = train_market(edge, horizon=1)
    [rival] = rivals
    rival.refresh_from_db()
    assert rival.status == "active"
    assert candidate.status == "rejected" and "does not beat the active model" in candidate.reason
    assert candidate.metrics["active"] is not None and "and active" in candidate.reason
