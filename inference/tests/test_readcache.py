"""The read cache answers every API read exactly as DRF does, follows the data, and leaves the rest to Django."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.asgi import get_asgi_application
from django.test import override_settings
from django.utils import timezone

from apitokens.models import ApiToken, digest
from core import redis_client
from core.redis_client import get_redis
from inference import readcache
from inference.api import authentication, throttling
from inference.readcache import ReadCache
from markets.names import get_or_create_market
from modeling import registry
from pipeline.entry import replay

from .conftest import MARKET, api_user, train_model

OTHER = "kraken:BTC-USD"

pytestmark = pytest.mark.django_db(transaction=True)

BASE = f"/api/v1/markets/{MARKET}"
LATEST = f"{BASE}/predictions/latest/"


class Counted:
    """The application behind the read cache, counting the requests that reach it."""

    def __init__(self, app):
        self.app = app
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


class Django:
    """Stands for the Django application behind the read cache: records what reaches it."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope_of(url: str, token: str | None, changes: dict) -> dict:
    path, _, query = url.partition("?")
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Token {token}".encode()))
    headers += changes.pop("headers", [])
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": headers}
    return scope | {"client": ("127.0.0.1", 50000), "scheme": "http", "server": ("127.0.0.1", 80), **changes}


async def request(app, url: str = LATEST, token: str | None = None, **changes) -> tuple[int, list, bytes]:
    """(status, headers in order, body) of one GET through the ASGI application."""
    sent, body_read = [], []

    async def receive():
        if not body_read:
            body_read.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client stays connected until the answer

    async def send(message):
        sent.append(message)

    await app(scope_of(url, token, changes), receive, send)
    return sent[0]["status"], sent[0]["headers"], b"".join(m.get("body", b"") for m in sent[1:])


def call(app, url: str = LATEST, token: str | None = None, **changes) -> tuple[int, list, bytes]:
    return asyncio.run(request(app, url, token, **changes))


class Ahead:
    """Stands for the time module of the code under test: Unix time `by` seconds ahead of the real one."""

    def __init__(self):
        self.by = 0.0

    def time(self) -> float:
        return time.time() + self.by

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def ahead(monkeypatch) -> Ahead:
    """Moves the read cache's and the token cache's clocks (and Django's) forward without waiting."""
    clock = Ahead()
    monkeypatch.setattr(readcache, "time", clock)
    monkeypatch.setattr(authentication, "time", clock)
    monkeypatch.setattr(timezone, "now", lambda: datetime.fromtimestamp(clock.time(), UTC))
    return clock


def forget_answers() -> None:
    """Every stored answer, not the generations."""
    redis = get_redis()
    for key in redis.scan_iter("inference:readcache:[0-9a-f]*"):
        redis.delete(key)


@pytest.fixture
def django_app(thread_connections_close) -> Counted:
    return Counted(get_asgi_application())


@pytest.fixture
def served(market, parts, django_app):
    """A replayed market, a bot token, and the latest prediction answered by DRF (so cached)."""
    replay(parts[0], market)
    _, token = api_user()
    app = ReadCache(django_app)
    assert call(app, LATEST, token.key)[0] == 200  # the token is new: DRF checks it (the answer is not kept)
    assert call(app, LATEST, token.key)[0] == 200  # now known: DRF's answer is kept
    return app, token.key


def endpoints(model_id: int) -> list[str]:
    return [
        "/api/v1/markets/",
        f"{BASE}/",
        f"{BASE}/candles/",
        f"{BASE}/candles/?limit=5",
        f"{BASE}/candles/?interval=2m&limit=3",
        f"{BASE}/predictions/",
        f"{BASE}/predictions/?limit=5",
        LATEST,
        f"{BASE}/predictions/latest/?format=json",
        f"{BASE}/metrics/",
        "/api/v1/models/",
        f"/api/v1/models/?market={MARKET}",
        f"/api/v1/models/{model_id}/",
        "/api/v1/markets/kraken:eth-usd/predictions/?limit=2",
    ]


def test_every_read_endpoint_is_answered_from_the_cache_as_drf_answered_it(served, django_app, market):
    app, token = served
    model = train_model(market)
    forget_answers()
    for path in endpoints(model.pk):
        calls = django_app.calls
        drf = call(app, path, token)
        assert drf[0] == 200, (path, drf)
        cached = call(app, path, token)
        assert django_app.calls == calls + 1, path  # the second one did not reach Django
        assert cached == drf, path  # status, every header in order, body: byte for byte


def test_anonymous_and_token_answers_are_kept_apart(served, django_app):
    """Without a token DRF consults the session, and its answer varies by Cookie."""
    app, token = served
    with override_settings(API_ANONYMOUS_READ=True):
        anonymous = call(app, LATEST)
        assert (b"Vary", b"Accept, Cookie") in anonymous[1]
        calls = django_app.calls
        assert call(app, LATEST) == anonymous
        assert call(app, LATEST, token) != anonymous  # the token's own answer, cached by the fixture
        assert django_app.calls == calls


def test_new_candles_and_predictions_show_at_the_next_request(served, django_app, market, parts):
    app, token = served
    paths = [LATEST, f"{BASE}/candles/?limit=1000", f"{BASE}/predictions/?limit=1000"]
    before = {path: call(app, path, token)[2] for path in paths}
    replay(parts[1], market)  # the pipeline step stores and publishes new candles and predictions
    calls = django_app.calls
    after = {path: call(app, path, token)[2] for path in paths}
    assert django_app.calls == calls + len(paths)  # every one asked DRF again
    assert json.loads(after[LATEST])["made_at"] > json.loads(before[LATEST])["made_at"]
    for path in paths[1:3]:
        assert len(json.loads(after[path])["results"]) > len(json.loads(before[path])["results"])


@override_settings(API_READ_CACHE_TTL_S=600)  # no answer nears its lifetime however slow the host
def test_a_step_of_one_market_invalidates_only_that_markets_answers(served, django_app, market, parts):
    app, token = served
    model = train_model(market)
    other = f"/api/v1/markets/{OTHER}"
    get_or_create_market(OTHER)
    own = [LATEST, f"{BASE}/", f"{BASE}/candles/", f"{BASE}/metrics/", f"/api/v1/models/{model.pk}/"]
    others = ["/api/v1/markets/", "/api/v1/models/", f"{other}/", f"{other}/candles/", f"{other}/metrics/"]
    for path in own + others:
        call(app, path, token)
    calls = django_app.calls
    assert [call(app, path, token)[0] for path in own + others] == [200] * 10
    assert django_app.calls == calls  # all cached
    replay(parts[1], market)  # one step (or more) of this market
    calls = django_app.calls
    for path in others:
        call(app, path, token)
    assert django_app.calls == calls  # no other market's answers, nor the lists, were recomputed
    for path in own:
        call(app, path, token)
    assert django_app.calls == calls + len(own)  # this market's and its model's were


class Held:
    """Stands for DRF answering slowly: once `holding` is set, the next request to reach it waits for release."""

    def __init__(self, app):
        self.app = app
        self.holding = False
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        if self.holding:
            self.holding = False
            self.reached.set()
            await self.release.wait()
        await self.app(scope, receive, send)


@override_settings(API_READ_CACHE_TTL_S=600)
def test_requests_waiting_for_a_miss_get_its_answer_though_the_data_moved_meanwhile(served, django_app, market):
    _, token = served
    path = f"{BASE}/candles/?limit=7"
    held = Held(django_app)
    app = ReadCache(held)

    async def miss_while_the_data_moves():
        held.holding = True
        first = asyncio.ensure_future(request(app, path, token))
        await held.reached.wait()
        waiting = [asyncio.ensure_future(request(app, path, token)) for _ in range(3)]
        (computing,) = app.computing.values()
        while len(computing._waiters) < 3:  # until each waits for the first (asyncio.Event keeps its waiters)
            await asyncio.sleep(0.001)
        await database_sync_to_async(readcache.market_changed)(market)
        held.release.set()
        return await first, await asyncio.gather(*waiting)

    calls = django_app.calls
    first, waiting = asyncio.run(miss_while_the_data_moves())
    assert first[0] == 200 and waiting == [first] * 3
    assert django_app.calls == calls + 1


@override_settings(API_READ_CACHE_TTL_S=600)
def test_a_stale_answer_is_sent_by_every_process_while_one_request_asks_drf_again(served, django_app, market):
    """Single flight across processes: two read caches (as two web processes) share the refresh claim."""
    _, token = served
    path = f"{BASE}/candles/?limit=5"
    held = Held(django_app)
    first, second = ReadCache(held), ReadCache(held)  # each its own process-local state
    stale = call(first, path, token)
    readcache.market_changed(market)  # a step wrote: the answer is stale
    calls = django_app.calls

    async def refresh_while_others_ask():
        held.holding = True
        refresh = asyncio.ensure_future(request(first, path, token))
        await held.reached.wait()
        others = await asyncio.gather(*(request(app, path, token) for app in (first, second, second, first)))
        refreshed_before = refresh.done()
        held.release.set()
        return others, refreshed_before, await refresh

    others, refreshed_before, refreshed = asyncio.run(refresh_while_others_ask())
    assert others == [stale] * 4 and not refreshed_before
    assert django_app.calls == calls + 1  # one request asked DRF, in one process
    assert refreshed[0] == 200
    assert call(second, path, token) == refreshed  # the refreshed answer is current for every process
    assert django_app.calls == calls + 1


def test_a_stale_answer_is_never_sent_past_its_lifetime(served, django_app, market, ahead):
    _, token = served
    path = f"{BASE}/candles/?limit=5"
    held = Held(django_app)
    first, second = ReadCache(held), ReadCache(held)
    with override_settings(API_READ_CACHE_TTL_S=60):
        stale = call(first, path, token)
        readcache.market_changed(market)

        async def refreshing(ages: list[float]) -> list[tuple]:
            """(answer, whether it reached DRF) of a request of the other process at each age, during a refresh."""
            held.holding = True
            refresh = asyncio.ensure_future(request(first, path, token))
            await held.reached.wait()
            answers = []
            for age in ages:
                ahead.by, calls = age, django_app.calls
                answers.append((await request(second, path, token), django_app.calls > calls))
            held.release.set()
            await refresh
            return answers

        within, past = asyncio.run(refreshing([59.0, 60.5]))
    assert within == (stale, False)  # the refresh is claimed elsewhere and the answer is within its lifetime
    assert past[0][0] == 200 and past[1]  # past its lifetime: DRF answered this request too


def test_a_new_or_promoted_model_shows_at_the_next_request(served, market):
    app, token = served
    assert json.loads(call(app, "/api/v1/models/", token)[2])["results"] == []
    model = train_model(market)
    assert [m["id"] for m in json.loads(call(app, "/api/v1/models/", token)[2])["results"]] == [model.pk]
    before = json.loads(call(app, f"/api/v1/models/{model.pk}/", token)[2])["status"]
    registry.promote(model, "test")
    assert json.loads(call(app, f"/api/v1/models/{model.pk}/", token)[2])["status"] != before


def test_an_answer_computed_while_the_data_changed_is_stale_at_once(served, django_app, market):
    app, token = served
    path = f"{BASE}/candles/"

    async def data_changes_meanwhile(scope, receive, send):
        await django_app(scope, receive, send)  # DRF read the data, then it changed before the answer was stored
        await database_sync_to_async(readcache.market_changed)(market)

    racing = ReadCache(data_changes_meanwhile)
    assert call(racing, path, token)[0] == 200
    calls = django_app.calls
    assert call(app, path, token)[0] == 200
    assert django_app.calls == calls + 1


def test_entries_expire_after_their_lifetime(served, django_app, ahead):
    app, token = served
    path = "/api/v1/markets/"
    with override_settings(API_READ_CACHE_TTL_S=60):
        call(app, path, token)
        calls = django_app.calls
        call(app, path, token)
        assert django_app.calls == calls
        ahead.by = 61
        call(app, path, token)
    assert django_app.calls == calls + 1


def test_an_answer_past_half_its_lifetime_is_sent_while_one_request_asks_drf_again(served, django_app, ahead):
    _, token = served
    path = "/api/v1/markets/"
    held = False

    async def slow_drf(scope, receive, send):
        if held:
            with_drf.set()
            await release.wait()
        await django_app(scope, receive, send)

    app = ReadCache(slow_drf)

    async def slow_drf_then_others():
        refresh = asyncio.ensure_future(request(app, path, token))
        await with_drf.wait()
        others = await asyncio.gather(*(request(app, path, token) for _ in range(3)))
        refreshed_before = refresh.done()
        release.set()
        return others, refreshed_before, await refresh

    with override_settings(API_READ_CACHE_TTL_S=60):
        before = call(app, path, token)
        call(app, path, token)
        ahead.by = 31
        calls, held = django_app.calls, True
        with_drf, release = asyncio.Event(), asyncio.Event()
        others, refreshed_before, refreshed = asyncio.run(slow_drf_then_others())
    assert django_app.calls == calls + 1
    assert others == [before] * 3 and not refreshed_before
    assert refreshed[0] == 200


def test_concurrent_misses_of_one_key_ask_drf_once(served, django_app):
    app, token = served

    async def burst():
        return await asyncio.gather(*(request(app, "/api/v1/markets/", token) for _ in range(8)))

    calls = django_app.calls
    answers = asyncio.run(burst())
    assert django_app.calls == calls + 1
    assert all(a == answers[0] for a in answers) and answers[0][0] == 200


def test_a_bad_token_gets_drfs_401_on_a_cached_path(served, django_app):
    app, _ = served
    calls = django_app.calls
    status, headers, body = call(app, LATEST, "not-a-known-token")
    assert (status, json.loads(body)) == (401, {"detail": "Invalid token."})
    assert (b"WWW-Authenticate", b"Token") in headers
    assert django_app.calls == calls + 1


def test_throttled_hits_get_drfs_429_with_retry_after(served, django_app, throttle_clock):
    app, token = served
    with override_settings(API_THROTTLE_RATE="3/hour"):  # one hourly window: the clock stands still
        assert call(app, LATEST, token)[0] == 200  # 1
        assert call(app, LATEST, token)[0] == 200  # 2
        assert call(app, LATEST, token)[0] == 200  # 3
        calls = django_app.calls
        cached = call(app, LATEST, token)
        assert django_app.calls == calls  # refused before Django
        assert cached[0] == 429 and (b"Retry-After", b"3600") in cached[1]  # the whole hour: it has just begun
        forget_answers()  # no answer to learn the headers from: DRF answers
        drf = call(app, LATEST, token)
        assert django_app.calls == calls + 1
    assert sorted(cached[1]) == sorted(drf[1])
    assert cached[::2] == drf[::2]


def test_failed_authentications_count_against_the_address(served, django_app, throttle_clock, monkeypatch):
    """Bogus tokens after the anonymous budget is used get 429, without a database lookup; and each bogus
    token uses the budget as an anonymous read would (whichever path answers)."""
    app, _ = served
    lookups = []
    real_find = ApiToken.objects.find
    monkeypatch.setattr(ApiToken.objects, "find", lambda key: lookups.append(key) or real_find(key))
    with override_settings(API_ANONYMOUS_READ=True, API_ANON_THROTTLE_RATE="3/hour"):
        assert call(app, LATEST)[0] == 200  # 1: anonymous, answered by DRF (the answer is now cached)
        assert call(app, LATEST, "cp_bogus_1")[0] == 401  # 2: looked up, refused, counted
        assert call(app, LATEST)[0] == 200  # 3: from the cache
        for n in range(20):
            status, headers, body = call(app, LATEST, f"cp_bogus_{n + 2}")
            assert status == 429, (n, status, body)
            assert any(name == b"Retry-After" for name, _ in headers)
        assert lookups == ["cp_bogus_1"]
        assert call(app, LATEST)[0] == 429  # the anonymous budget is spent either way


def test_bogus_tokens_use_up_the_anonymous_budget(served, django_app, throttle_clock):
    app, _ = served
    with override_settings(API_ANONYMOUS_READ=True, API_ANON_THROTTLE_RATE="3/hour"):
        assert [call(app, LATEST, f"cp_bogus_{n}")[0] for n in range(5)] == [401, 401, 401, 429, 429]
        assert call(app, LATEST)[0] == 429


def test_throttle_buckets_in_redis_are_named_by_token_id_not_key(served, throttle_clock):
    app, token = served
    call(app, LATEST, token)
    buckets = [k.decode() for k in get_redis().scan_iter("inference:throttle:*")]
    token_id = ApiToken.objects.find(token).pk
    assert buckets and all(token not in b and digest(token) not in b for b in buckets)
    assert any(b.startswith(f"inference:throttle:token:{token_id}:") for b in buckets)


@pytest.fixture
def redis_down():
    """REDIS_URL names a port nothing listens on: every client made meanwhile fails to connect."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caches = (redis_client.get_redis, throttling._count_script, readcache._store_script)
    for cached in caches:
        cached.cache_clear()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
        yield
    for cached in caches:
        cached.cache_clear()


def test_with_redis_down_drf_answers_every_endpoint(served, django_app, market, redis_down):
    _, token = served
    app = ReadCache(django_app)  # its own clients, made with the unreachable URL
    calls = django_app.calls
    for path in endpoints(train_model(market).pk):
        assert call(app, path, token)[0] == 200, path
    assert call(app, LATEST, "not-a-known-token")[0] == 401
    assert django_app.calls == calls + len(endpoints(0)) + 1


def test_a_redis_that_forgot_the_script_still_answers(served):
    app, token = served
    expected = call(app, LATEST, token)
    get_redis().script_flush()
    assert call(app, LATEST, token) == expected
    assert call(app, LATEST, token)[0] == 200  # and the script is known again


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "POST"},
        {"query_string": b"format=api"},
        {"path": "/api/v1/markets/kraken:BTC-USD/predictions/latest/"},
        {"path": "/api/schema/"},
        {"headers": [(b"accept", b"text/html,application/xhtml+xml")]},
        {"headers": [(b"accept", b"application/json; indent=4")]},
        {"headers": [(b"cookie", b"sessionid=abc")]},
        {"scheme": "https"},
    ],
)
def test_anything_it_has_no_answer_for_goes_to_django(served, changes):
    _, token = served
    django = Django()
    assert call(ReadCache(django), LATEST, token, **changes)[0] == 299
    assert django.calls == 1


def test_unknown_token_or_other_schemes_go_to_django(served):
    _, token = served
    django = Django()
    app = ReadCache(django)
    assert call(app, LATEST, token)[0] == 200
    assert call(app, LATEST, "not-a-known-token")[0] == 299
    assert call(app, LATEST, None, headers=[(b"authorization", f"Bearer {token}".encode())])[0] == 299
    assert django.calls == 2


def test_host_not_allowed_goes_to_django(served):
    _, token = served
    django = Django()
    headers = [(b"host", b"evil.example"), (b"authorization", f"Token {token}".encode())]
    assert call(ReadCache(django), LATEST, None, headers=headers)[0] == 299  # the last Host header is the one read


def test_anonymous_read_follows_the_setting(served, django_app):
    app, _ = served
    assert call(app, LATEST)[0] == 401  # DRF's answer
    with override_settings(API_ANONYMOUS_READ=True):
        assert call(app, LATEST)[0] == 200
        calls = django_app.calls
        assert call(app, LATEST)[0] == 200
        assert django_app.calls == calls


def test_a_token_past_its_cache_time_is_served_while_rechecked(served):
    _, token = served
    credentials, _, expires = authentication._valid[digest(token)]
    ttl = 5.0
    with override_settings(API_TOKEN_CACHE_S=ttl):
        authentication._valid[digest(token)] = (credentials, time.monotonic() - 1.5 * ttl, expires)
        django = Django()
        fronted = ReadCache(django)

        async def request_then_wait() -> int:
            status = (await request(fronted, LATEST, token))[0]
            await asyncio.gather(*fronted.tasks)
            return status

        assert asyncio.run(request_then_wait()) == 200
        assert authentication.remembered(token, ttl) is not None  # re-checked and remembered again

        authentication._valid[digest(token)] = (credentials, time.monotonic() - 2.5 * ttl, expires)
        assert call(fronted, LATEST, token)[0] == 299  # too old to serve on trust: Django checks it


@pytest.mark.parametrize("change", ["revoke", "rotate", "delete"])
def test_a_token_changed_in_this_process_is_refused_at_once(served, change):
    app, token = served
    getattr(ApiToken.objects.find(token), change)()
    assert call(app, LATEST, token)[0] == 401


def test_an_expired_token_is_refused_at_its_expiry_whatever_the_cache(served, ahead):
    app, token = served
    ApiToken.objects.filter(digest=digest(token)).update(expires=timezone.now() + timedelta(seconds=30))
    authentication.check(token)  # as the DRF view would have remembered it, with its expiry
    assert call(app, LATEST, token)[0] == 200
    ahead.by = 31  # the remembered check is as recent as before: only the expiry has passed
    assert call(app, LATEST, token)[0] == 401


def test_plain_http_goes_to_django_when_https_is_required(served):
    """SecurityMiddleware redirects plain HTTP: the cache answers only what Django would not redirect."""
    app, token = served
    proxy = ("HTTP_X_FORWARDED_PROTO", "https")
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=proxy):
        assert call(app, LATEST, token, scheme="https")[0] == 200  # DRF's, then cached
        django = Django()
        fronted = ReadCache(django)
        assert call(fronted, LATEST, token, scheme="https")[0] == 200
        assert call(fronted, LATEST, token, scheme="http", headers=[(b"x-forwarded-proto", b"https")])[0] == 200
        assert call(fronted, LATEST, token, scheme="https", headers=[(b"x-forwarded-proto", b"http")])[0] == 299
    assert django.calls == 1
