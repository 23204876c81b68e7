"""A revoked or expired token is refused everywhere: REST (DRF), the read cache and the websocket, open ones included.

Against the real app under uvicorn. A revocation made by another process (here: an
UPDATE, which no signal of this process sees) takes effect within the cache time
(API_TOKEN_CACHE_S for DRF; twice that on the read cache and on an open websocket);
an expiry at its time.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from apitokens.models import ApiToken
from inference.api import views
from pipeline.entry import replay
from testsupport import wait_until

from .conftest import MARKET, api_user

pytestmark = pytest.mark.django_db(transaction=True)

TTL = 0.5
SLACK_S = 5.0  # what a machine at load 8 may add to a bound in time
LATEST = f"/api/v1/markets/{MARKET}/predictions/latest/"
SUBSCRIBE = {"action": "subscribe", "channel": "predictions", "market": MARKET}


@pytest.fixture
def view_calls(monkeypatch) -> list:
    """Requests for the latest prediction that reached the DRF view (the others were the read cache's)."""
    calls, get = [], views.LatestPrediction.get

    def counted(self, request, *args, **kwargs):
        calls.append(request.path)
        return get(self, request, *args, **kwargs)

    monkeypatch.setattr(views.LatestPrediction, "get", counted)
    return calls


async def closed_with(ws, timeout: float) -> tuple[dict, int]:
    """The error frame the server sent, and the close code after it."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    return frame, closed.value.rcvd.code


def statuses(server, key: str) -> tuple[int, int]:
    """(GET markets/, GET latest prediction) with the key."""
    headers = {"Authorization": f"Token {key}"}
    with httpx.Client(headers=headers, timeout=10) as client:
        return client.get(server.url("/api/v1/markets/")).status_code, client.get(server.url(LATEST)).status_code


@override_settings(API_TOKEN_CACHE_S=TTL)
def test_a_token_revoked_elsewhere_is_refused_everywhere_within_the_cache_time(
    server, market, parts, view_calls, thread_connections_close
):
    replay(parts[0], market)
    _, token = api_user()

    async def scenario():
        assert await asyncio.to_thread(statuses, server, token.key) == (200, 200)
        for _ in range(3):
            assert (await asyncio.to_thread(statuses, server, token.key))[1] == 200
        assert len(view_calls) == 1  # the rest were answered by the read cache
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            await ws.send(json.dumps(SUBSCRIBE))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            # Another process revokes it: no signal reaches this one's cache.
            await database_sync_to_async(ApiToken.objects.filter(pk=token.pk).update)(revoked=timezone.now())
            revoked_at = time.monotonic()
            # Within twice the cache time (the re-check runs at most each second), plus what a machine at load 8
            # adds.
            frame, code = await closed_with(ws, timeout=2 * max(TTL, 1.0) + SLACK_S)
            assert (frame, code) == ({"type": "error", "error": "token revoked"}, 4401)
        refused = await asyncio.to_thread(
            wait_until, lambda: statuses(server, token.key) == (401, 401), 2 * TTL + SLACK_S, "401 on both reads"
        )
        assert refused and time.monotonic() - revoked_at < 2 * TTL + SLACK_S
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            assert await closed_with(ws, timeout=5) == ({"type": "error", "error": "token revoked"}, 4401)
        async with connect(server.ws_url()) as ws:
            await ws.send(json.dumps({"action": "auth", "token": token.key}))
            assert await closed_with(ws, timeout=5) == ({"type": "error", "error": "token revoked"}, 4401)

    asyncio.run(scenario())


@override_settings(API_TOKEN_CACHE_S=60)  # a long cache: expiry does not wait for it
def test_an_expired_token_is_refused_everywhere_at_its_expiry(server, market, parts, thread_connections_close):
    replay(parts[0], market)
    user, _ = api_user()
    token = ApiToken.objects.issue(user, "short-lived", timezone.now() + timedelta(seconds=2))

    async def scenario():
        for _ in range(3):
            assert await asyncio.to_thread(statuses, server, token.key) == (200, 200)
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            await ws.send(json.dumps(SUBSCRIBE))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            frame, code = await closed_with(ws, timeout=5)
            assert (frame, code) == ({"type": "error", "error": "token expired"}, 4401)
            assert timezone.now() >= token.expires
        assert await asyncio.to_thread(statuses, server, token.key) == (401, 401)
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            assert await closed_with(ws, timeout=5) == ({"type": "error", "error": "token expired"}, 4401)

    asyncio.run(scenario())


def test_refusals_say_why(db):
    user, live = api_user()
    expired = ApiToken.objects.issue(user, "expired", timezone.now() + timedelta(seconds=0.05))
    revoked = ApiToken.objects.issue(user, "revoked")
    revoked.revoke()
    wait_until(lambda: timezone.now() >= expired.expires, 5, "the token's expiry")
    client = APIClient()
    for key, detail in [
        (live.key, None),
        (expired.key, "Token expired."),
        (revoked.key, "Token revoked."),
        ("cp_not-a-key", "Invalid token."),
        (live.key + "x", "Invalid token."),
    ]:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        response = client.get("/api/v1/markets/")
        if detail is None:
            assert response.status_code == 200
        else:
            assert (response.status_code, response.json(), response["WWW-Authenticate"]) == (
                401,
                {"detail": detail},
                "Token",
            )
