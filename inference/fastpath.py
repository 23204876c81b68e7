"""ASGI fast path for GET /api/v1/markets/<market>/predictions/latest/, the request bots poll most.

Answered from Redis without entering Django when everything it needs is already
known in this process: a token the API accepted within API_TOKEN_CACHE_S (or
anonymous read allowed), the market's id (remembered by the DRF view), the
headers Django's middleware put on that view's last answer, and the cached
prediction. One Redis round trip: a script counts the request in the shared
throttle window and returns the prediction. Anything else (the browsable API, a
session cookie, query parameters, an unknown token or market, a cold cache, a
Redis outage, plain HTTP when SECURE_SSL_REDIRECT is on) goes to the DRF view,
which gives the same answer the long way and teaches this path what it needs. The checks themselves are Django's and
DRF's: validate_host, the token keyword and cache of the authentication class,
the throttle's buckets, script and its Throttled message.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from functools import cache, lru_cache
from typing import NamedTuple

import redis.asyncio
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from django.utils.deprecation import MiddlewareMixin
from redis.exceptions import NoScriptError, RedisError
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core import metrics
from inference.api.authentication import check, remembered
from inference.api.throttling import COUNT_SCRIPT, address_ident, bucket, rate_for, throttled_body, token_ident
from inference.api.views import known_market_id
from inference.services import latest_key

HANDLER = "api:latest-prediction"  # its label in cryptopred_http_requests_total, as the Django view's
REQUESTS = metrics.DeferredCounts(metrics.HTTP_REQUESTS)
PATH = re.compile(r"^/api/v1/markets/([^/]+)/predictions/latest/$")
# Headers of Django's answer that belong to that one response, not to the endpoint.
OWN_HEADERS = {"content-type", "content-length", "date", "server", "set-cookie", "retry-after"}
_learned: list[tuple[bytes, bytes]] | None = None  # the endpoint's headers, as Django's middleware set them


class LearnHeaders(MiddlewareMixin):
    """Outermost Django middleware: remembers the headers of a successful latest-prediction answer.

    So the fast path sends exactly what Django's middleware stack adds (security
    headers, Vary, Allow), with no list of its own to keep in step.
    """

    def process_response(self, request, response):
        if (
            response.status_code == 200
            and response.get("Content-Type") == "application/json"
            and PATH.match(request.path)
        ):
            global _learned
            _learned = [(k.lower().encode(), v.encode()) for k, v in response.items() if k.lower() not in OWN_HEADERS]
        return response


class Config(NamedTuple):
    allowed_hosts: tuple[str, ...]
    session_cookie: bytes
    token_cache_s: float
    anonymous_read: bool
    rates: tuple[tuple[int, int], tuple[int, int]]  # (anonymous, authenticated): (requests, period s)
    ssl_redirect: bool  # plain HTTP goes to Django, whose SecurityMiddleware redirects it
    proxy_ssl_header: tuple[bytes, bytes] | None  # (ASGI header name, value that means HTTPS)


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
        _asgi_header(settings.SECURE_PROXY_SSL_HEADER),
    )


def _asgi_header(meta_header: tuple[str, str] | None) -> tuple[bytes, bytes] | None:
    """("HTTP_X_FORWARDED_PROTO", "https") -> (b"x-forwarded-proto", b"https")."""
    if not meta_header:
        return None
    name, value = meta_header
    return name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1"), value.encode("latin-1")


def _secure(scope, headers: dict, proxy_ssl_header: tuple[bytes, bytes] | None) -> bool:
    """Django's HttpRequest.is_secure() on an ASGI scope: the proxy's header when present, else the scheme."""
    if proxy_ssl_header is not None:
        name, value = proxy_ssl_header
        forwarded = headers.get(name)
        if forwarded is not None:
            return forwarded.split(b",", 1)[0].strip() == value
    return scope.get("scheme") == "https"


@receiver(setting_changed, dispatch_uid="inference.fastpath.config")
def _settings_changed(**kwargs) -> None:
    _config.cache_clear()
    _host_allowed.cache_clear()


@lru_cache(maxsize=256)
def _host_allowed(host_header: bytes, allowed_hosts: tuple[str, ...]) -> bool:
    """Django's ALLOWED_HOSTS check, remembered per Host header value."""
    host, _ = split_domain_port(host_header.decode("latin-1"))
    return validate_host(host, allowed_hosts)


class LatestPredictionFastPath:
    def __init__(self, app):
        self.app = app
        self.clients: dict[int, tuple] = {}  # per event loop (uvicorn runs one)
        self.rechecking: set[str] = set()
        self.tasks: set[asyncio.Future] = set()  # keeps background re-checks referenced

    async def __call__(self, scope, receive, send) -> None:
        answer = None
        if scope["type"] == "http" and scope["method"] == "GET" and _learned is not None:
            try:
                answer = await self.answer(scope)
            except RedisError:  # Redis is down: Django answers from the database
                answer = None
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, body, extra = answer
        REQUESTS.inc(HANDLER, str(status))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + _learned + extra})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope) -> tuple[int, bytes, list] | None:
        """(status, body, extra headers), or None to leave the request to Django."""
        match = PATH.match(scope["path"])
        if match is None or scope["query_string"]:
            return None
        config = _config()
        headers = dict(scope["headers"])
        if not _host_allowed(headers.get(b"host", b""), config.allowed_hosts):
            return None
        if config.ssl_redirect and not _secure(scope, headers, config.proxy_ssl_header):
            return None
        if b"text/html" in headers.get(b"accept", b"") or config.session_cookie in headers.get(b"cookie", b""):
            return None
        market_id = known_market_id(match[1])
        if market_id is None:
            return None
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
            ident, authenticated = token_ident(credentials[1].pk), True
        elif config.anonymous_read:
            ident, authenticated = address_ident(scope["client"][0] if scope.get("client") else ""), False
        else:
            return None
        limit, period = config.rates[authenticated]
        counter, retry_after = bucket(ident, period)
        client, sha = self.redis()
        keys_args = (counter, latest_key(market_id), period + 1)
        try:
            count, cached = await client.evalsha(sha, 2, *keys_args)
        except NoScriptError:  # a restarted or flushed Redis forgot the script
            count, cached = await client.eval(COUNT_SCRIPT, 2, *keys_args)
        if count > limit:
            metrics.API_THROTTLED.labels("authenticated" if authenticated else "anonymous").inc()
            return 429, throttled_body(retry_after), [(b"retry-after", str(math.ceil(retry_after)).encode())]
        if cached is None:
            await client.decr(counter)  # Django's view counts this request
            return None
        return 200, cached, []

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
