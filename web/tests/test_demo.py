"""`make demo`: the sample split, option errors, and a real run of the whole system fed by the replay."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from markets.models import Market, Trade
from testsupport import free_port
from web import demo

SAMPLE = settings.BASE_DIR / demo.SAMPLE


def rows(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.readlines()


def test_split_keeps_every_row_once_and_cuts_on_the_second(tmp_path):
    history, live, cut = demo.split_trades(SAMPLE, tmp_path, 3600)
    source, first, rest = rows(SAMPLE), rows(history), rows(live)
    assert first[0] == rest[0] == source[0]  # both keep the header
    assert first[1:] + rest[1:] == source[1:]
    assert cut == datetime(2021, 7, 1, 1, 0, 21, tzinfo=UTC)  # first trade 00:00:21.647 + 1 h, whole second
    assert first[-1] < cut.isoformat()[:19] <= rest[1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--speed", "fast"], "--speed: expected max or a positive factor"),
        (["--history", "6 hours"], "--history: invalid duration"),
        ([], "gemini:ETH-USD already has trades; run with --reset"),
    ],
)
def test_bad_options_and_existing_data_are_one_line_errors(argv, error, settings):
    settings.PORT = free_port()
    market = Market.objects.create(exchange="gemini", base="ETH", quote="USD", symbol="ETHUSD")
    Trade.objects.create(market=market, trade_id=1, ts=datetime(2021, 7, 1, tzinfo=UTC), price=1, qty=1, side="buy")
    with pytest.raises(CommandError, match=error.replace("(", r"\(")):
        call_command("demo", *argv)


def wait_for_model_prediction(url: str, after: str, deadline: float) -> dict | None:
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            body = response.json()
            if body["model"]["id"] is not None and body["made_at"] > after:
                return body
        time.sleep(0.5)
    return None


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_demo_runs_the_system_and_predictions_flow(tmp_path):
    port = free_port()
    db = settings.DATABASES["default"]
    test_db_url = urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + db["NAME"]).geturl()
    env = {
        # No REDIS_URL: the demo starts its own embedded Redis under tmp_path, so its beat's
        # periodic tasks can never reach the workers of other tests.
        **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
        "DATABASE_URL": test_db_url,
        "PORT": str(port),
        "CRYPTOPRED_DATA_DIR": str(tmp_path),
        "TRAIN_MIN_ROWS": "50",  # 30 min of history
        "CELERY_CONCURRENCY": "1",
    }
    argv = [sys.executable, "manage.py", "demo", "--history", "30m", "--speed", "60", "--promote"]
    proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        prediction = wait_for_model_prediction(
            f"{base}/api/v1/markets/{demo.MARKET}/predictions/latest/", "2021-07-01T00:30:00Z", time.monotonic() + 180
        )
        assert prediction is not None, "no model prediction from the live replay"
        assert Decimal(prediction["lower"]) <= Decimal(prediction["price"]) <= Decimal(prediction["upper"])
        page = httpx.get(f"{base}/", timeout=5)  # anonymous read is on in the demo
        assert page.status_code == 200 and demo.MARKET in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    assert "demo: training gemini:ETH-USD" in output
    assert f"CRYPTOPRED_DATA_DIR={tmp_path} .venv/bin/python manage.py changepassword admin" in output
    assert "promoted anyway" in output or " active: " in output


def fake_make_demo(tmp_path: Path, **env: str) -> str:
    """`make demo` with a stand-in interpreter that prints what manage.py would have been started with."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text('#!/bin/sh\necho "data=$CRYPTOPRED_DATA_DIR db=[$DATABASE_URL] port=$PORT args=$*"\n')
    python.chmod(0o755)
    (venv / ".installed").touch()  # newer than requirements.lock: nothing to install
    base = {k: v for k, v in os.environ.items() if k not in {"CRYPTOPRED_DATA_DIR", "PORT", "MAKEFLAGS"}}
    result = subprocess.run(
        ["make", "-s", "demo", f"VENV={venv}"],
        cwd=settings.BASE_DIR, env={**base, "DATABASE_URL": "postgresql://elsewhere/db", **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def test_make_demo_honours_data_dir_and_port(tmp_path):
    assert "data=var/demo db=[] port= args=manage.py demo --reset --promote" in fake_make_demo(tmp_path)
    output = fake_make_demo(tmp_path, CRYPTOPRED_DATA_DIR=str(tmp_path / "mine"), PORT="8123")
    assert f"data={tmp_path / 'mine'} db=[] port=8123 " in output


def test_demo_says_how_to_reset_the_admin_password(settings):
    from cryptopred.management.commands.up import password_reset_command

    settings.DATA_DIR = settings.BASE_DIR / "var" / "demo"
    command = password_reset_command("admin", embedded_only=True)
    assert command == "DATABASE_URL= CRYPTOPRED_DATA_DIR=var/demo .venv/bin/python manage.py changepassword admin"
    settings.DATA_DIR = settings.BASE_DIR / "var"
    assert password_reset_command("admin") == ".venv/bin/python manage.py changepassword admin"
