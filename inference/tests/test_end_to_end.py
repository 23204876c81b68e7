"""End to end: `manage.py replay` in its own process, an active model, a real websocket client and REST."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import connection
from websockets.asyncio.client import connect

from inference.metrics import live_metrics
from inference.models import Prediction
from modeling import registry
from pipeline.entry import replay

from .conftest import MARKET, api_user, train_model

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def replay_in_subprocess(path: Path) -> subprocess.CompletedProcess:
    """The replay command against the test database, as a separate process (publishes through Redis)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    return subprocess.run(
        [sys.executable, "manage.py", "replay", str(path), "--market", MARKET],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_db},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replayed_file_yields_predictions_over_websocket_and_rest(server, market, parts):
    replay(parts[0], market)
    artifact = train_model(market)
    registry.promote(artifact, reason="test")
    _, token = api_user()

    async def scenario() -> list[dict]:
        async with connect(server.ws_url(f"/ws/v1/stream/?token={token.key}")) as ws:
            # The horizon of the model trained (the others are served by persistence).
            await ws.send(json.dumps({"action": "subscribe", "channel": "predictions", "market": MARKET, "horizon": 1}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            done = await asyncio.to_thread(replay_in_subprocess, parts[1])
            assert done.returncode == 0, done.stderr
            newest = await asyncio.to_thread(newest_made_at)
            pushed = []
            while not pushed or pushed[-1]["made_at"] != newest:
                pushed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                assert len(pushed) <= 20
            return pushed

    def newest_made_at() -> str:
        newest = Prediction.objects.filter(market=market, horizon=1).latest("made_at")
        return newest.made_at.isoformat().replace("+00:00", "Z")

    pushed = asyncio.run(scenario())
    model = {"id": artifact.pk, "version": artifact.version, "algorithm": "ridge"}
    assert all(p["type"] == "prediction" and p["model"] == model for p in pushed)

    headers = {"Authorization": f"Token {token.key}"}
    latest = httpx.get(server.url(f"/api/v1/markets/{MARKET}/predictions/latest/"), headers=headers).json()
    assert latest == {k: v for k, v in pushed[-1].items() if k != "type"}
    served = Prediction.objects.filter(market=market, model=artifact)
    assert served.count() > 100
    assert served.filter(realized__isnull=True).count() == 1  # only the newest awaits its target window
    metrics = httpx.get(server.url(f"/api/v1/markets/{MARKET}/metrics/"), headers=headers).json()
    assert metrics == json.loads(json.dumps(live_metrics(market)))
    assert httpx.get(server.url(f"/api/v1/markets/{MARKET}/metrics/")).status_code == 401
