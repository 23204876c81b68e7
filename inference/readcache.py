"""One cached read path for every GET under /api/v1/: DRF's own answers, kept in Redis, sent before Django.

A request it may answer (GET under /api/v1/, no browsable API or session cookie,
a Host Django accepts, HTTPS when Django requires it) is authenticated and
throttled as DRF does it: the token keyword and cache of the authentication
class, the throttle's buckets, script and Throttled message. One Redis round
trip counts the request and reads the cached answer with the generations it
depends on. A hit is sent as DRF sent it (status, headers, body); a miss goes to
Django, and the StoreAnswers middleware keeps a 200 JSON answer under the
generations the request began with. Anything else (an unknown token, a cold
cache, a Redis outage) goes to Django, which gives the same answer the long way.

Key: authenticated or not (the session is consulted only without a token, which
adds Vary: Cookie), scheme, Host and Accept (`next` links and the JSON indent
follow them), path and raw query string.

Freshness: an answer carries the generations it began under (one computed while
they moved is stale at once, unless a newer answer is stored already).
- a market's paths, and a model's (its live metrics follow its market's scores):
  the market's own counter (bumped after a pipeline step of that market wrote
  its candles, predictions or scores) and the catalogue's (market and model
  rows saved or deleted);
- the other paths (markets/, models/): the catalogue's only; no step changes them.
An answer is current while its generations stand and it is younger than half its
lifetime (API_READ_CACHE_TTL_S). Once its generations moved or it reached half
its lifetime, one request (in any process: a Redis key claims the refresh) asks
DRF again while the others are sent it meanwhile (stale-while-revalidate); no
answer older than its lifetime is sent. What changes without a step or a model
save (stream state and last trade time of a market, rows changed by a queryset
UPDATE) hence shows within the lifetime plus the time DRF takes to answer. So
does a bump lost to a Redis outage.

Misses of one key in a process wait for the first one's answer rather than each
asking DRF (a burst at each change would queue on the database).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import NamedTuple

import redis.asyncio
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.deprecation import MiddlewareMixin
from redis.exceptions import NoScriptError, RedisError
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core import prometheus
from core.hosts import asgi_ssl_header, host_allowed, is_secure
from core.redis_client import best_effort, get_redis
from inference.api.authentication import check, remembered
from inference.api.throttling import COUNT_SCRIPT, address_ident, bucket, rate_for, throttled_body, token_ident
from markets.models import Market
from markets.names import MarketError, parse_market_name
from modeling.models import ModelArtifact

log = logging.getLogger(__name__)
REQUESTS = prometheus.DeferredCounts(prometheus.HTTP_REQUESTS)
PREFIX = "/api/v1/"
MARKET_PATH = re.compile(r"^/api/v1/markets/([^/]+)/")
SCOPE_KEY = "cryptopred.readcache"  # the Miss of a request that Django answers, for StoreAnswers
CATALOGUE = "inference:readcache:gen:catalogue"
MODEL_PATH = re.compile(r"^/api/v1/models/(\d+)/$")
# Store the answer (ARGV[1]) under KEYS[1] for ARGV[2] ms unless the answer stored began after it (ARGV[3]):
# a slow request must not put an older answer over a newer one. The entry's second line is when it began.
STORE_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if stored then
  local began = tonumber(string.match(stored, '^[^\\n]*\\n([^\\n]*)\\n'))
  if began and began > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
REFRESH_AT = 0.5  # of an answer's lifetime: from then on one request asks DRF again while it is still sent


def market_generation(name: str) -> str:
    return f"inference:readcache:gen:market:{name}"


class Miss(NamedTuple):
    key: str
    generations: tuple[str, ...]  # their Redis keys
    values: tuple[bytes, ...]  # when the request began
    counter: str  # the throttle window that counted the request
    began: float  # Unix time: the answer is as old as the data DRF reads after it
    refresh: str | None = None  # the key claiming the refresh of a stale answer, released once answered


class Answer(NamedTuple):
    status: int
    handler: str  # its label in cryptopred_http_requests_total, as the Django view's
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Entry(NamedTuple):
    tag: bytes  # the generations' values it was computed under
    began: float
    answer: Answer


def encode_entry(miss: Miss, handler: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """generations \\n began \\n handler \\n headers (name:value, NUL-separated: neither holds one) \\n body."""
    head = b"\0".join(f"{name}:{value}".encode("latin-1") for name, value in headers)
    return b"\n".join([b".".join(miss.values), repr(miss.began).encode(), handler.encode(), head, body])


def decode_entry(entry: bytes) -> Entry:
    tag, began, handler, head, body = entry.split(b"\n", 4)
    headers = [tuple(h.split(b":", 1)) for h in head.split(b"\0")] if head else []
    return Entry(tag, float(began), Answer(200, handler.decode(), headers, body))


def throttled(stored: Answer, retry_after: float) -> Answer:
    """DRF's 429 on the endpoint of a stored answer: its headers, Retry-After and the Throttled message."""
    body = throttled_body(retry_after)
    headers = [h for h in stored.headers if h[0].lower() != b"content-length"]
    headers += [(b"Retry-After", str(math.ceil(retry_after)).encode()), (b"Content-Length", b"%d" % len(body))]
    return Answer(429, stored.handler, headers, body)


class Config(NamedTuple):
    allowed_hosts: tuple[str, ...]
    session_cookie: bytes
    token_cache_s: float
    anonymous_read: bool
    rates: tuple[tuple[int, int], tuple[int, int]]  # (anonymous, authenticated): (requests, period s)
    ssl_redirect: bool  # plain HTTP goes to Django, whose SecurityMiddleware redirects it
    proxy_ssl_header: tuple[bytes, bytes] | None  # (ASGI header name, value that means HTTPS)
    ttl_s: float


@cache
def _config() -> Config:
    """The settings this path reads, looked up once (settings lookups are a noticeable share of its cost)."""
    return Config(
        tuple(settings.ALLOWED_HOSTS),
        settings.SESSION_COOKIE_NAME.encode(),
        settings.API_TOKEN_CACHE_S,
        settings.API_ANONYMOUS_READ,
        (rate_for(False), rate_for(True)),
        settings.SECURE_SSL_REDIRECT,
        asgi_ssl_header(settings.SECURE_PROXY_SSL_HEADER),
        settings.API_READ_CACHE_TTL_S,
    )


@receiver(setting_changed, dispatch_uid="inference.readcache.config")
def _settings_changed(**kwargs) -> None:
    _config.cache_clear()
    _host_allowed.cache_clear()


@lru_cache(maxsize=256)
def _host_allowed(host_header: bytes, allowed_hosts: tuple[str, ...]) -> bool:
    """Django's ALLOWED_HOSTS check, remembered per Host header value."""
    return host_allowed(host_header.decode("latin-1"), allowed_hosts)


@lru_cache(maxsize=1024)
def generations_of(path: str) -> tuple[str, ...] | None:
    """The generation keys an answer of the path depends on; None for an ill-formed market name (not cached).

    A model's path is answered by model_generations (its market is in the database).
    """
    match = MARKET_PATH.match(path)
    if match is None:
        return (CATALOGUE,)
    try:
        exchange, base, quote = parse_market_name(match[1])
    except MarketError:
        return None
    # The market's name as its rows spell it: kraken:eth-usd reads the same market as kraken:ETH-USD.
    return CATALOGUE, market_generation(f"{exchange}:{base}-{quote}")


def model_market(pk: int) -> str | None:
    """The name of a model's market (None: no such model); a model never changes market."""
    found = ModelArtifact.objects.filter(pk=pk).values_list("market__exchange", "market__base", "market__quote")
    return next((f"{exchange}:{base}-{quote}" for exchange, base, quote in found), None)


def cache_key(authenticated: bool, secure: bool, headers: dict, scope) -> str:
    """Everything of the request that DRF's answer depends on besides the data, digested."""
    parts = (
        b"1" if authenticated else b"0",
        b"https" if secure else b"http",
        headers.get(b"host", b""),
        headers.get(b"accept", b""),
        scope["path"].encode(),
        scope["query_string"],
    )
    return "inference:readcache:" + hashlib.sha256(b"\n".join(parts)).hexdigest()


class ReadCache:
    """ASGI application in front of Django: answers cached API reads, passes everything else on."""

    def __init__(self, app):
        self.app = app
        self.clients: dict[int, tuple] = {}  # per event loop (uvicorn runs one)
        self.rechecking: set[str] = set()
        self.tasks: set[asyncio.Future] = set()  # keeps background re-checks referenced
        self.computing: dict[str, asyncio.Event] = {}  # keys being answered by Django in this process
        self.model_markets: dict[int, str] = {}  # model id -> its market's name

    async def __call__(self, scope, receive, send) -> None:
        outcome = None
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            try:
                outcome = await self.answer(scope)
            except RedisError:  # Redis is down: Django answers from the database
                outcome = None
        if isinstance(outcome, Answer):
            await self.send(outcome, send)
        elif isinstance(outcome, Miss):
            await self.compute(outcome, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def send(self, answer: Answer, send) -> None:
        REQUESTS.inc(answer.handler, str(answer.status))
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def compute(self, miss: Miss, scope, receive, send) -> None:
        """Django answers; StoreAnswers keeps the answer; requests of the key that wait meanwhile then read it."""
        # Registered before any await: a request of the key that looks now waits for this one.
        event = asyncio.Event()
        self.computing.setdefault(miss.key, event)
        try:
            try:
                await self.redis()[0].decr(miss.counter)  # Django's throttle counts this request
            except RedisError:
                pass  # then Django runs without Redis too
            await self.app({**scope, SCOPE_KEY: miss}, receive, send)
        finally:
            if self.computing.get(miss.key) is event:
                del self.computing[miss.key]
            event.set()
            if miss.refresh is not None:
                try:
                    await self.redis()[0].delete(miss.refresh)
                except RedisError:
                    pass  # the claim expires with the answer's lifetime

    async def answer(self, scope) -> Answer | Miss | None:
        """The answer from the cache, a Miss for Django to answer and store, or None to leave it to Django."""
        config = _config()
        if config.ttl_s <= 0:  # the cache is off
            return None
        headers = dict(scope["headers"])
        if not _host_allowed(headers.get(b"host", b""), config.allowed_hosts):
            return None
        secure = is_secure(scope, headers, config.proxy_ssl_header)
        if config.ssl_redirect and not secure:
            return None
        if b"text/html" in headers.get(b"accept", b"") or config.session_cookie in headers.get(b"cookie", b""):
            return None
        generations = await self.generations(scope["path"])
        if generations is None:
            return None
        client_id = self.client_ident(scope, headers, config)
        if client_id is None:
            return None
        ident, authenticated = client_id
        key = cache_key(authenticated, secure, headers, scope)
        limit, period = config.rates[authenticated]
        counter, retry_after = bucket(ident, period)
        count, *values, entry = await self.count_and_read(counter, *generations, key, period + 1)
        values = tuple(v or b"0" for v in values)
        if count > limit and entry is not None:
            prometheus.API_THROTTLED.labels("authenticated" if authenticated else "anonymous").inc()
            return throttled(decode_entry(entry).answer, retry_after)
        refresh = None
        if entry is not None and count <= limit:
            stored = decode_entry(entry)
            age = time.time() - stored.began
            if age < config.ttl_s:
                if stored.tag == b".".join(values) and age < REFRESH_AT * config.ttl_s:
                    return stored.answer
                # Stale: one request in any process asks DRF again, the others are sent this answer meanwhile.
                refresh = key + ":refresh"
                if key in self.computing or not await self.claim(refresh, config.ttl_s):
                    return stored.answer
        if count > limit:
            await self.redis()[0].decr(counter)  # Django counts it and answers the 429
            return None
        if refresh is None and (computing := self.computing.get(key)) is not None:
            await computing.wait()
            if (stored := await self.read(key, config.ttl_s)) is not None:
                return stored
        return Miss(key, generations, values, counter, time.time(), refresh)

    async def generations(self, path: str) -> tuple[str, ...] | None:
        """generations_of the path; a model's: the catalogue's and its market's (None: no such model)."""
        match = MODEL_PATH.match(path)
        if match is None:
            return generations_of(path)
        pk = int(match[1])
        if pk not in self.model_markets:
            name = await database_sync_to_async(model_market)(pk)
            if name is None:
                return None  # Django answers the 404
            self.model_markets[pk] = name
        return CATALOGUE, market_generation(self.model_markets[pk])

    async def claim(self, refresh: str, ttl_s: float) -> bool:
        """Claim the refresh of a stale answer for this request, unless a request of any process holds it."""
        return bool(await self.redis()[0].set(refresh, b"1", nx=True, px=max(1, round(ttl_s * 1000))))

    async def read(self, key: str, ttl_s: float) -> Answer | None:
        """The answer another request just stored, if within its lifetime: the newest there is, even if its
        data moved on while it was computed (the waiting requests would otherwise each ask DRF)."""
        entry = await self.redis()[0].get(key)
        if entry is None:
            return None
        stored = decode_entry(entry)
        return stored.answer if time.time() - stored.began < ttl_s else None

    def client_ident(self, scope, headers: dict, config: Config) -> tuple[str, bool] | None:
        """(throttle ident, authenticated) as DRF would find them, or None if only Django can tell."""
        authorization = headers.get(b"authorization", b"").decode("latin-1").split()
        if authorization:
            if len(authorization) != 2 or authorization[0] != TokenAuthentication.keyword:
                return None
            key = authorization[1]
            credentials = remembered(key, 2 * config.token_cache_s)
            if credentials is None:
                return None
            if remembered(key, config.token_cache_s) is None:
                self.recheck(key)  # meanwhile served: a burst of re-checks in Django would stall every client
            return token_ident(credentials[1].pk), True
        if config.anonymous_read:
            return address_ident(scope["client"][0] if scope.get("client") else ""), False
        return None

    async def count_and_read(self, *keys_and_expiry) -> list:
        """[request count, generation values..., cached entry]: the throttle's script, one round trip."""
        client, sha = self.redis()
        *keys, expiry = keys_and_expiry
        try:
            return await client.evalsha(sha, len(keys), *keys, expiry)
        except NoScriptError:  # a restarted or flushed Redis forgot the script
            return await client.eval(COUNT_SCRIPT, len(keys), *keys, expiry)

    def recheck(self, key: str) -> None:
        """Re-check a remembered token against the database in the background, once at a time."""
        if key in self.rechecking:
            return
        self.rechecking.add(key)

        async def run() -> None:
            try:
                await database_sync_to_async(check)(key)
            except AuthenticationFailed:
                pass  # forgotten: the next request goes to Django, which answers 401
            finally:
                self.rechecking.discard(key)

        self.tasks.add(task := asyncio.ensure_future(run()))
        task.add_done_callback(self.tasks.discard)

    def redis(self) -> tuple:
        """The async client of the running loop and the SHA1 of the shared counting script.

        EVALSHA directly: redis-py's Script wrapper costs a noticeable share of this path.
        """
        loop = id(asyncio.get_running_loop())
        if loop not in self.clients:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)
            self.clients[loop] = client, hashlib.sha1(COUNT_SCRIPT.encode()).hexdigest()
        return self.clients[loop]


class StoreAnswers(MiddlewareMixin):
    """Outermost Django middleware: keeps the answer of a request the read cache missed.

    Outermost, so the stored headers are all that Django's middleware stack adds
    (security headers, Vary, Allow, Content-Length), as it wrote them.
    Only a 200 JSON answer that sets no cookie: an error is DRF's to give each time.
    """

    def process_response(self, request, response):
        miss = getattr(request, "scope", {}).get(SCOPE_KEY)
        if (
            miss is not None
            and response.status_code == 200
            and response.get("Content-Type") == "application/json"
            and not response.streaming
            and not response.cookies
        ):
            entry = encode_entry(miss, request.resolver_match.view_name, response.items(), response.content)
            keep_ms = max(1, round(_config().ttl_s * 1000))  # never sent past its lifetime
            best_effort(
                "storing a read cache answer",
                lambda: _store_script()(keys=[miss.key], args=[entry, keep_ms, repr(miss.began)]),
            )
        return response


@cache
def _store_script():
    return get_redis().register_script(STORE_SCRIPT)


def _bump(*generations: str) -> None:
    """Move the generations on once the transaction has committed (an answer read before would be stored)."""

    def incr() -> None:
        with get_redis().pipeline(transaction=False) as pipe:
            for key in generations:
                pipe.incr(key)
            pipe.execute()

    # Redis down: its answers expire within API_READ_CACHE_TTL_S; the outage is logged once, not per step.
    transaction.on_commit(lambda: best_effort("moving the read cache's generations on", incr))


def market_changed(market: Market) -> None:
    """The market's candles, predictions or scores changed: its answers (and its models') are stale."""
    _bump(market_generation(market.name))


@receiver([post_save, post_delete], sender=Market, dispatch_uid="inference.readcache.market")
@receiver([post_save, post_delete], sender=ModelArtifact, dispatch_uid="inference.readcache.model")
def catalogue_changed(sender, **kwargs) -> None:
    """A market or a model was saved or deleted (admin, training, promotion): every answer is stale."""
    _bump(CATALOGUE)
