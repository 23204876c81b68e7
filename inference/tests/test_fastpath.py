"""The ASGI fast path for the latest prediction answers exactly like the DRF view, or leaves it to Django."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apitokens.models import ApiToken, digest
from core.redis_client import get_redis
from inference.api import authentication
from inference.fastpath import LatestPredictionFastPath
from pipeline.services import replay

from .conftest import MARKET, api_user

pytestmark = pytest.mark.django_db(transaction=True)

URL = f"/api/v1/markets/{MARKET}/predictions/latest/"


class Django:
    """Stands for the Django application behind the fast path: records what reaches it."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def request(app, token: str | None = None, **changes) -> tuple[int, dict, bytes]:
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    headers += changes.pop("headers", [])
    scope = {"type": "http", "method": "GET", "path": URL, "query_string": b"", "headers": headers}
    scope |= {"client": ("127.0.0.1", 50000), **changes}
    sent = []

    async def send(message):
        sent.append(message)

    await app(scope, None, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def call(app, token: str | None = None, **changes) -> tuple[int, dict, bytes]:
    return asyncio.run(request(app, token, **changes))


@pytest.fixture
def served(market, parts):
    """A replayed market, a bot token, and one request through the DRF view (which the fast path learns from)."""
    replay(parts[0], market)
    _, token = api_user()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get(URL)
    assert response.status_code == 200
    return token.key, response.json(), client


def test_answers_like_the_view_without_django(served):
    token, expected, _ = served
    django = Django()
    status, headers, body = call(LatestPredictionFastPath(django), token)
    assert (status, django.calls) == (200, 0)
    assert json.loads(body) == expected
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"content-security-policy"] == settings.CONTENT_SECURITY_POLICY.encode()
    assert int(headers[b"content-length"]) == len(body)


def test_a_redis_that_forgot_the_script_still_answers(served):
    token, expected, _ = served
    app = LatestPredictionFastPath(Django())
    get_redis().script_flush()
    status, _, body = call(app, token)
    assert (status, json.loads(body)) == (200, expected)
    assert call(app, token)[0] == 200  # and the script is known again


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "POST"},
        {"query_string": b"format=api"},
        {"path": "/api/v1/markets/kraken:BTC-USD/predictions/latest/"},
        {"headers": [(b"accept", b"text/html,application/xhtml+xml")]},
        {"headers": [(b"cookie", b"sessionid=abc")]},
    ],
)
def test_anything_it_cannot_answer_alone_goes_to_django(served, changes):
    token, _, _ = served
    django = Django()
    assert call(LatestPredictionFastPath(django), token, **changes)[0] == 299
    assert django.calls == 1


def test_unknown_token_or_other_schemes_go_to_django(served):
    token, _, _ = served
    django = Django()
    app = LatestPredictionFastPath(django)
    assert call(app, "not-a-known-token")[0] == 299
    assert call(app, None, headers=[(b"authorization", f"Bearer {token}".encode())])[0] == 299
    assert django.calls == 2


def test_host_not_allowed_goes_to_django(served):
    token, _, _ = served
    django = Django()
    app = LatestPredictionFastPath(django)
    headers = [(b"host", b"evil.example"), (b"authorization", f"Token {token}".encode())]
    assert call(app, None, headers=headers)[0] == 299  # the last Host header is the one read


def test_anonymous_read_follows_the_setting(served):
    django = Django()
    app = LatestPredictionFastPath(django)
    assert call(app)[0] == 299
    with override_settings(API_ANONYMOUS_READ=True):
        assert call(app)[0] == 200
    assert django.calls == 1


def test_throttle_budget_is_shared_with_the_view(served, throttle_clock):
    token, _, client = served
    app = LatestPredictionFastPath(Django())
    with override_settings(API_THROTTLE_RATE="3/hour"):  # one hourly window: the clock stands still
        assert client.get(URL).status_code == 200  # 1 (the fixture's request counted in a per-minute window)
        assert call(app, token)[0] == 200  # 2
        assert call(app, token)[0] == 200  # 3
        status, headers, body = call(app, token)
        assert status == 429 and headers[b"retry-after"] == b"3600"  # the whole hour: it has just begun
        assert "throttled" in json.loads(body)["detail"]
        assert client.get(URL).status_code == 429


def test_a_token_past_its_cache_time_is_served_while_rechecked(served, thread_connections_close):
    token, _, _ = served
    credentials, _, expires = authentication._valid[digest(token)]
    ttl = 5.0
    with override_settings(API_TOKEN_CACHE_S=ttl):
        authentication._valid[digest(token)] = (credentials, time.monotonic() - 1.5 * ttl, expires)
        app = LatestPredictionFastPath(Django())

        async def request_then_wait() -> int:
            status = (await request(app, token))[0]
            await asyncio.gather(*app.tasks)
            return status

        assert asyncio.run(request_then_wait()) == 200
        assert authentication.remembered(token, ttl) is not None  # re-checked and remembered again

        authentication._valid[digest(token)] = (credentials, time.monotonic() - 2.5 * ttl, expires)
        assert call(app, token)[0] == 299  # too old to serve on trust: Django checks it


@pytest.mark.parametrize("change", ["revoke", "rotate", "delete"])
def test_a_token_changed_in_this_process_is_forgotten_at_once(served, change):
    token, _, _ = served
    getattr(ApiToken.objects.find(token), change)()
    assert call(LatestPredictionFastPath(Django()), token)[0] == 299


def test_an_expired_token_is_refused_at_its_expiry_whatever_the_cache(served):
    token, _, _ = served
    ApiToken.objects.filter(digest=digest(token)).update(expires=timezone.now() + timedelta(seconds=0.5))
    authentication.check(token)  # as the DRF view would have remembered it, with its expiry
    app = LatestPredictionFastPath(Django())
    assert call(app, token)[0] == 200
    time.sleep(0.6)
    assert call(app, token)[0] == 299  # Django answers 401


def test_throttle_buckets_in_redis_are_named_by_token_id_not_key(served, throttle_clock):
    token, _, _ = served
    call(LatestPredictionFastPath(Django()), token)
    buckets = [k.decode() for k in get_redis().scan_iter("inference:throttle:*")]
    token_id = ApiToken.objects.find(token).pk
    assert buckets and all(token not in b and digest(token) not in b for b in buckets)
    assert any(b.startswith(f"inference:throttle:token:{token_id}:") for b in buckets)


def test_plain_http_goes_to_django_when_https_is_required(served):
    """SecurityMiddleware redirects plain HTTP: the fast path answers only what Django would not redirect."""
    token, _, _ = served
    django = Django()
    app = LatestPredictionFastPath(django)
    proxy = ("HTTP_X_FORWARDED_PROTO", "https")
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=proxy):
        assert call(app, token, scheme="http")[0] == 299
        assert call(app, token, scheme="https")[0] == 200
        assert call(app, token, scheme="http", headers=[(b"x-forwarded-proto", b"https")])[0] == 200
        assert call(app, token, scheme="https", headers=[(b"x-forwarded-proto", b"http")])[0] == 299
    assert django.calls == 2
