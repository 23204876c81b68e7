"""docs/examples/ws_client.py, run as the docs say, against a real server: it prints what is pushed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inference.models import Prediction
from pipeline.entry import replay

from .conftest import MARKET, ROOT, api_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_documented_client_prints_the_pushed_predictions(server, market, parts):
    _, token = api_user()
    argv = [sys.executable, str(ROOT / "docs" / "examples" / "ws_client.py"), server.ws_url(), token.key, MARKET, "3"]
    client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        subscribed = json.loads(client.stdout.readline())
        assert subscribed["type"] == "subscribed" and subscribed["market"] == MARKET, client.stderr.read()
        replay(parts[0], market)
        out, err = client.communicate(timeout=60)
    finally:
        client.kill()
    assert client.returncode == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) == 3 and all(line[0] == "prediction" for line in lines)
    made = {p.made_at.isoformat().replace("+00:00", "Z") for p in Prediction.objects.filter(market=market)}
    assert {line[2] for line in lines} <= made
