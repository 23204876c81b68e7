import time

import pytest
from django.test import Client

from core.health import BEAT_KEY
from core.redis_client import get_redis


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
