"""REST API under /api/v1/: real replayed data, token auth, validation, pagination, throttling."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from inference import broadcast
from inference.metrics import live_metrics
from inference.models import Prediction
from markets.models import Candle
from modeling import registry
from pipeline.entry import replay

from .conftest import api_user, train_model

pytestmark = pytest.mark.django_db

BASE = "/api/v1/markets/kraken:ETH-USD"


@pytest.fixture
def replayed(market, parts, django_capture_on_commit_callbacks):
    """Two slices of real trades: the first served by persistence, the second by a promoted model."""
    with django_capture_on_commit_callbacks(execute=True):
        replay(parts[0], market)
    registry.promote(train_model(market), reason="test")
    with django_capture_on_commit_callbacks(execute=True):
        replay(parts[1], market)
    return market


@pytest.fixture
def client() -> APIClient:
    _, token = api_user()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def pages(client: APIClient, url: str) -> list[dict]:
    results = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json()
        results += response.json()["results"]
        url = response.json()["next"]
    return results


def test_anonymous_read_follows_the_setting(replayed):
    anonymous = APIClient()
    response = anonymous.get(f"{BASE}/predictions/latest/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    with override_settings(API_ANONYMOUS_READ=True):
        assert anonymous.get(f"{BASE}/predictions/latest/").status_code == 200


def test_invalid_or_inactive_token_is_refused(replayed):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/v1/markets/").status_code == 401
    user, token = api_user("retired-bot")
    user.is_active = False
    user.save()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/markets/").status_code == 401


WRITES = ["post", "put", "patch", "delete"]


def test_writes_are_405_with_allow_for_every_client(client, django_user_model):
    session = APIClient(enforce_csrf_checks=True)  # a browser: its session cookie, no CSRF token
    session.force_login(django_user_model.objects.create_user("trader"))
    anonymous = APIClient()
    paths = ["/api/v1/markets/", f"{BASE}/predictions/latest/", f"{BASE}/candles/", "/api/schema/", "/api/docs/"]
    for who in (client, session, anonymous):
        for path in paths:
            for method in WRITES:
                response = getattr(who, method)(path, {"exchange": "x"}, format="json")
                assert response.status_code == 405, (method, path, response.content)
                assert response["Allow"] == "GET, HEAD, OPTIONS", path
    assert client.options("/api/v1/markets/").status_code == 200


def test_schema_and_docs_follow_anonymous_read(client):
    anonymous = APIClient()
    for path in ["/api/schema/", "/api/docs/", "/api/docs/?script="]:
        refused = anonymous.get(path)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == "Token", path
        assert client.get(path).status_code == 200, path
        with override_settings(API_ANONYMOUS_READ=True):
            assert anonymous.get(path).status_code == 200, path


def test_markets_list_and_detail_with_stream_state(client, replayed):
    listed = client.get("/api/v1/markets/").json()
    assert [m["name"] for m in listed] == ["kraken:ETH-USD"]
    detail = client.get(f"{BASE}/").json()
    assert detail["stream_state"] == "stopped" and detail["interval_s"] == 10
    assert detail["last_trade_at"].endswith("Z")
    assert detail["book"] is None  # trades only: no book windows


@pytest.mark.parametrize("name", ["kraken:BTC-USD", "kraken", "nope:", "kraken:ETH-USD-X"])
def test_unknown_or_ill_formed_market_is_404(client, replayed, name):
    for suffix in ["", "candles/", "predictions/", "predictions/latest/", "metrics/"]:
        response = client.get(f"/api/v1/markets/{name}/{suffix}")
        assert response.status_code == 404, (suffix, response.content)
        assert name in response.json()["detail"]


def test_candles_paginate_through_every_stored_candle(client, replayed):
    stored = list(Candle.objects.filter(market=replayed).order_by("start"))
    candles = pages(client, f"{BASE}/candles/?limit=37")
    assert len(candles) == len(stored)
    first, last = candles[0], candles[-1]
    assert first["start"] == stored[0].start.isoformat().replace("+00:00", "Z")
    assert first["close"] == f"{stored[0].close.normalize():f}"
    assert datetime.fromisoformat(last["end"]) == stored[-1].start + timedelta(seconds=10)
    assert last["end"].endswith("Z")
    assert all(isinstance(c["volume"], str) for c in candles)


def test_candles_time_range(client, replayed):
    stored = list(Candle.objects.filter(market=replayed).order_by("start"))
    start, end = stored[10].start, stored[20].start
    body = client.get(f"{BASE}/candles/", {"start": start.isoformat(), "end": end.isoformat()}).json()
    assert [c["start"] for c in body["results"]] == [c.start.isoformat().replace("+00:00", "Z") for c in stored[10:20]]


def test_candles_at_a_coarser_interval_merge_the_stored_ones_like_export(client, replayed):
    """?interval=1m: the same bars as export_candles --interval 1m over the same windows, page after page."""
    from decimal import Decimal

    from markets.trades.candles import epoch_to_datetime
    from markets.trades.export import candle_bars

    stored = list(Candle.objects.filter(market=replayed).order_by("start"))
    begin = -(-int(stored[0].start.timestamp()) // 60) * 60
    stop = int(stored[-1].start.timestamp()) // 60 * 60  # the last minute may be incomplete: left out
    start, end = epoch_to_datetime(begin), epoch_to_datetime(stop)
    iso = [t.isoformat().replace("+00:00", "Z") for t in (start, end)]
    query = f"interval=1m&limit=7&start={iso[0]}&end={iso[1]}"
    bars = pages(client, f"{BASE}/candles/?{query}")
    expected = {bar.start: bar for bar in candle_bars(replayed, 60, start, end)}
    assert len(bars) == (stop - begin) // 60 > 14  # every minute, over several pages
    assert {b["interval_s"] for b in bars} == {60}
    for bar in bars:
        t = int(datetime.fromisoformat(bar["start"]).timestamp())
        assert datetime.fromisoformat(bar["end"]).timestamp() == t + 60
        in_minute = [c for c in stored if t <= c.start.timestamp() < t + 60]
        assert len(in_minute) == 6 and bar["final"] is True
        assert Decimal(bar["close"]) == in_minute[-1].close and Decimal(bar["open"]) == in_minute[0].open
        assert Decimal(bar["volume"]) == sum(c.volume for c in in_minute)
        if min(expected) < t < max(expected):  # export's first and last bars start/end at a traded window
            e = expected[t]
            assert (Decimal(bar["open"]), Decimal(bar["high"]), Decimal(bar["low"]), Decimal(bar["close"])) == (
                e.open, e.high, e.low, e.close
            )  # fmt: skip
            assert bar["trades"] == e.trades
    assert set(expected) <= {int(datetime.fromisoformat(b["start"]).timestamp()) for b in bars}

    # The market's own interval is the stored candles, as without the parameter.
    same = client.get(f"{BASE}/candles/?interval=10s&limit=5").json()
    assert same["results"] == client.get(f"{BASE}/candles/?limit=5").json()["results"]
    for bad in ("15s", "7", "0s"):
        response = client.get(f"{BASE}/candles/?interval={bad}")
        assert response.status_code == 400 and "interval" in response.json(), bad
    # Bars past the year 9999 (found by inference/tests/test_fuzz.py): a 400, not a 500.
    for query in ("interval=10000000d", "interval=1d&start=9999-12-01T00:00:00Z"):
        response = client.get(f"{BASE}/candles/?{query}")
        assert response.status_code == 400 and "after the year 9999" in response.json()["interval"][0], query


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=yesterday", "start"),
        ("end=2022-13-45T00:00:00Z", "end"),
        ("limit=-5", "limit"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=100000", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=cD0yMDIy", "cursor"),
        ("cursor=" + "A" * 5000, "cursor"),  # decodes to 3,750 NUL bytes: no position, so page 1 before
        ("cursor=%21%21bz0x", "cursor"),  # base64 skips the "!!": offset 1 of page 1 before
        ("start=2022-03-20T12:00:00Z&end=2022-03-20T11:00:00Z", "end"),
    ],
)
def test_bad_history_parameters_are_400_with_field_errors(client, replayed, query, field):
    for endpoint in ["candles", "predictions"]:
        response = client.get(f"{BASE}/{endpoint}/?{query}")
        assert response.status_code == 400, (endpoint, response.content)
        assert field in response.json()


def test_prediction_history_and_latest(client, replayed):
    stored = list(Prediction.objects.filter(market=replayed).order_by("made_at"))
    history = pages(client, f"{BASE}/predictions/?limit=100")
    assert [p["made_at"] for p in history] == [p.made_at.isoformat().replace("+00:00", "Z") for p in stored]
    assert {p["horizon"] for p in history} == {1, 3, 6}  # every horizon by default
    unscored = [p["horizon"] for p in history if p["realized"] is None]
    assert sorted(unscored) == [1, 3, 3, 3, 6, 6, 6, 6, 6, 6]  # the newest h at each horizon h: target not closed yet

    latest = client.get(f"{BASE}/predictions/latest/").json()
    newest = [p for p in stored if p.horizon == 1][-1]
    assert latest["made_at"] == history[-1]["made_at"] and latest["horizon"] == 1  # the shortest horizon
    assert latest["model"] == {"id": newest.model_id, "version": newest.model_version, "algorithm": "ridge"}
    assert latest["price"] == f"{newest.price.normalize():f}"
    assert latest["target_time"].endswith("Z")


def test_predictions_latest_and_metrics_per_horizon(client, replayed):
    for horizon in (1, 3, 6):
        history = pages(client, f"{BASE}/predictions/?limit=1000&horizon={horizon}")
        assert {p["horizon"] for p in history} == {horizon}
        assert len(history) == Prediction.objects.filter(market=replayed, horizon=horizon).count()
        ahead = [datetime.fromisoformat(p["target_time"]) - datetime.fromisoformat(p["made_at"]) for p in history]
        assert set(ahead) == {timedelta(seconds=10 * horizon)}
        latest = client.get(f"{BASE}/predictions/latest/?horizon={horizon}").json()
        assert (latest["horizon"], latest["made_at"]) == (horizon, history[-1]["made_at"])
        assert client.get(f"{BASE}/metrics/?horizon={horizon}").json() == live_metrics(replayed, horizon)
    every = client.get(f"{BASE}/predictions/latest/?horizon=all").json()
    assert [p["horizon"] for p in every] == [1, 3, 6]
    assert every[0] == client.get(f"{BASE}/predictions/latest/").json()
    assert [m["horizon"] for m in client.get(f"{BASE}/metrics/?horizon=all").json()] == [1, 3, 6]


@pytest.mark.parametrize("value", ["2", "0", "-1", "x", "1.0", "al"])
def test_a_horizon_that_is_not_predicted_is_400(client, replayed, value):
    for endpoint in ["predictions/", "predictions/latest/", "metrics/"]:
        response = client.get(f"{BASE}/{endpoint}", {"horizon": value})
        assert response.status_code == 400, (endpoint, value, response.content)
        assert response.json()["horizon"][0].startswith("expected one of 1, 3, 6")
    assert client.get(f"{BASE}/predictions/", {"horizon": "all"}).status_code == 400  # a list is every horizon


def test_the_pushed_prediction_and_candle_are_the_rest_answers(client, market, parts, monkeypatch):
    pushed: dict[tuple[str, int | None], list[dict]] = {}

    def publish(channel, market, payloads, horizon=None):
        pushed.setdefault((channel, horizon), []).extend(payloads)

    monkeypatch.setattr(broadcast, "publish", publish)
    replay(parts[0], market)
    for horizon in (1, 3, 6):
        latest = client.get(f"{BASE}/predictions/latest/?horizon={horizon}").json()
        assert pushed["predictions", horizon][-1] == {"type": "prediction", **latest}
    stored = {c["start"]: {"type": "candle", **c} for c in client.get(f"{BASE}/candles/?limit=1000").json()["results"]}
    last_pushed = {c["start"]: c for c in pushed["candles", None]}
    assert len(last_pushed) >= 5 and all(stored[start] == c for start, c in last_pushed.items())


def test_no_prediction_yet_is_404(client, market):
    response = client.get(f"{BASE}/predictions/latest/")
    assert response.status_code == 404
    assert "no prediction yet" in response.json()["detail"]


def test_metrics_endpoint_serves_live_metrics(client, replayed):
    body = client.get(f"{BASE}/metrics/").json()
    assert body == live_metrics(replayed)
    assert {g["served_by"]["algorithm"] for g in body["models"]} == {"persistence", "ridge"}


def test_models_list_filter_and_detail(client, replayed):
    listed = client.get("/api/v1/models/", {"market": "kraken:ETH-USD"}).json()["results"]
    assert len(listed) == 1 and listed[0]["status"] == "active" and "artifact" not in listed[0]
    detail = client.get(f"/api/v1/models/{listed[0]['id']}/").json()
    assert detail["live_metrics"]["count"] > 0
    assert detail["live_metrics"]["model"]["rmse"] > 0
    assert client.get("/api/v1/models/", {"market": "kraken:BTC-USD"}).status_code == 400
    assert "market" in client.get("/api/v1/models/", {"market": "bad name"}).json()
    assert client.get("/api/v1/models/99999999/").status_code == 404
    assert client.get("/api/v1/models/", {"limit": "-1"}).status_code == 400


@override_settings(API_THROTTLE_RATE="3/hour", API_ANON_THROTTLE_RATE="2/hour", API_ANONYMOUS_READ=True)
def test_throttling_is_per_token(replayed, throttle_clock):
    clients = []
    for name in ["bot-a", "bot-b"]:
        _, token = api_user(name)
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        clients.append(c)
    a, b = clients
    assert [a.get("/api/v1/markets/").status_code for _ in range(4)] == [200, 200, 200, 429]
    throttle_clock.now += 600
    assert a.get("/api/v1/markets/").headers["Retry-After"] == "3000"  # the rest of the hour
    assert b.get("/api/v1/markets/").status_code == 200
    anonymous = APIClient()
    assert [anonymous.get("/api/v1/markets/").status_code for _ in range(3)] == [200, 200, 429]
    throttle_clock.now += 3000  # the next hour: a new budget
    assert a.get("/api/v1/markets/").status_code == anonymous.get("/api/v1/markets/").status_code == 200


def test_openapi_schema_and_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/v1/markets/{market}/predictions/latest/" in schema["paths"]
    assert "/api/v1/markets/{market}/candles/" in schema["paths"]
    for path in ["predictions/", "predictions/latest/", "metrics/"]:
        params = schema["paths"][f"/api/v1/markets/{{market}}/{path}"]["get"]["parameters"]
        assert "horizon" in {p["name"] for p in params}, path
    latest = schema["paths"]["/api/v1/markets/{market}/predictions/latest/"]["get"]["responses"]["200"]
    one_of = latest["content"]["application/json"]["schema"]["oneOf"]
    assert {"$ref": "#/components/schemas/Prediction"} in one_of
    assert {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}} in one_of
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    assert client.get("/api/docs/").status_code == 200
