import logging
import time

import pytest
from django.test import Client

from core.health import BEAT_KEY
from core.lease import Lease
from core.redis_client import get_redis
from markets.models import Market
from markets.names import get_or_create_market, stream_key
from markets.streams.health import check_streams


@pytest.fixture
def fresh_beat():
    get_redis().set(BEAT_KEY, time.time())
    yield
    get_redis().delete(BEAT_KEY)


@pytest.mark.django_db(transaction=True)
def test_healthz_ok_with_worker_and_beat(celery_worker_app, fresh_beat):
    response = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["components"]) >= {"database", "redis", "celery", "beat", "timescaledb"}
    assert body["components"]["celery"]["workers"]
    assert isinstance(body["components"]["timescaledb"]["enabled"], bool)


@pytest.mark.django_db
def test_healthz_names_stale_beat():
    get_redis().set(BEAT_KEY, time.time() - 3600)
    try:
        response = Client().get("/healthz")
    finally:
        get_redis().delete(BEAT_KEY)
    assert response.status_code == 503
    body = response.json()
    assert "beat" in body["failing"]
    assert body["components"]["beat"]["ok"] is False


@pytest.mark.django_db
def test_streams_say_degraded_while_a_running_feed_is_not_live():
    """Offline, a stream retries: the component stays up (so /healthz answers 200) and says it is degraded."""
    market = get_or_create_market("kraken:ETH-USD")
    Market.objects.filter(pk=market.pk).update(enabled=True, stream_state=Market.StreamState.RECONNECTING)
    lease = Lease(stream_key(market.name), 5)
    assert lease.acquire()
    try:
        offline = check_streams()
        Market.objects.filter(pk=market.pk).update(stream_state=Market.StreamState.LIVE)
        live = check_streams()
    finally:
        lease.release()
    assert offline["ok"] and offline["degraded"] == "not live: kraken:ETH-USD"
    assert live["ok"] and "degraded" not in live


def test_healthz_status_and_code_of_each_case(monkeypatch):
    from cryptopred import views

    cases = [
        ({"a": {"ok": True}}, "ok", 200),
        ({"a": {"ok": True, "degraded": "not live: x"}}, "degraded", 200),
        ({"a": {"ok": True, "degraded": "not live: x"}, "b": {"ok": False}}, "fail", 503),
    ]
    for components, status, code in cases:
        monkeypatch.setattr(views, "run_checks", lambda c=components: (all(r["ok"] for r in c.values()), c))
        response = Client().get("/healthz")
        assert (response.json()["status"], response.status_code) == (status, code)


@pytest.mark.django_db
def test_a_failing_healthz_is_logged_once_per_change_not_per_poll(caplog):
    get_redis().set(BEAT_KEY, time.time() - 3600)
    try:
        with caplog.at_level(logging.INFO):
            codes = [Client().get("/healthz").status_code for _ in range(3)]
    finally:
        get_redis().delete(BEAT_KEY)
    assert codes == [503] * 3
    assert not [r for r in caplog.records if r.name == "django.request"]  # no "ERROR Service Unavailable"
    assert len([r for r in caplog.records if r.name == "cryptopred.views" and "beat" in r.getMessage()]) <= 1
