"""`make demo`: the sample split, option errors, and a real run of the whole system fed by the replay."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Max

from cryptopred import demo
from markets.models import Market, Trade
from markets.names import get_or_create_market
from testsupport import free_port

SAMPLE = settings.BASE_DIR / demo.GEMINI.trades
# After make demo starts: about 30 s on an idle machine. At load average 8 on two cores the demo's processes get
# about a quarter of a core each, so four times that, with slack: a demo that trains or replays several times
# more than it does today still fails it.
FIRST_BITSTAMP_PREDICTION_S = 150


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


def test_bitstamp_book_and_trades_are_cut_at_the_same_time(tmp_path):
    split = demo.split_sample(demo.BITSTAMP, settings.BASE_DIR, tmp_path, 2 * 3600)
    assert split.cut == datetime(2015, 5, 1, 2, 0, 4, tzinfo=UTC)  # first trade 00:00:04.645 + 2 h
    sources = (demo.BITSTAMP.book, demo.BITSTAMP.trades)
    for source, history, live in zip(sources, split.history, split.live, strict=True):
        original, first, rest = rows(settings.BASE_DIR / source), rows(history), rows(live)
        assert first[1:] + rest[1:] == original[1:]
        assert first[-1][:19] < "2015-05-01T02:00:04" <= rest[1][:19]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--speed", "fast"], "--speed: expected max or a positive factor"),
        (["--history", "6 hours"], "--history: invalid duration"),
        (["--book-history", "2 hours"], "--book-history: invalid duration"),
        ([], "gemini:ETH-USD already has data; run with --reset"),
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
def test_demo_runs_both_markets_and_bitstamp_predicts_first(tmp_path):
    port = free_port()
    env = demo_env(tmp_path, port)
    # Bitstamp with its default history (2 h), as make demo runs it; Gemini's shortened: it trains apart.
    argv = [sys.executable, "manage.py", "demo", "--history", "30m", "--speed", "60", "--promote"]
    started = time.monotonic()
    log = tmp_path / "demo.log"  # read while the demo runs: its printed commands are run as pasted
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=settings.BASE_DIR, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}/api/v1/markets"
        bitstamp = wait_for_model_prediction(
            f"{base}/{demo.BITSTAMP.market}/predictions/latest/", "2015-05-01T02:00:04Z", started + 300
        )
        elapsed = time.monotonic() - started
        assert bitstamp is not None, "no model prediction from Bitstamp's live replay"
        run_printed_commands(log.read_text())
        assert elapsed < FIRST_BITSTAMP_PREDICTION_S, f"first Bitstamp prediction after {elapsed:.0f} s"
        assert bitstamp["target"] == "mid" and Decimal(bitstamp["lower"]) <= Decimal(bitstamp["price"])
        gemini = wait_for_model_prediction(
            f"{base}/{demo.GEMINI.market}/predictions/latest/", "2021-07-01T00:30:00Z", time.monotonic() + 180
        )
        assert gemini is not None, "no model prediction from Gemini's live replay"
        assert Decimal(gemini["lower"]) <= Decimal(gemini["price"]) <= Decimal(gemini["upper"])
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)  # anonymous read is on in the demo
        assert page.status_code == 200 and demo.GEMINI.market in page.text and demo.BITSTAMP.market in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "demo: training bitstamp:BTC-USD" in output and "demo: training gemini:ETH-USD" in output
    assert f"CRYPTOPRED_DATA_DIR={tmp_path} .venv/bin/python manage.py changepassword admin" in output
    assert "promoted anyway" in output or " active: " in output
    assert "demo: bot token (user demo-bot" in output and "docs/examples/ws_client.py ws://127.0.0.1:" in output


def run_printed_commands(printed: str) -> None:
    """The bot token's curl and websocket commands the demo printed, run as pasted from the repository root:
    an invalid key fails both (401 for curl -f; close 4401 for the client), anonymous read or not."""
    lines = [line.strip() for line in printed.splitlines()]
    curl = next(line for line in lines if line.startswith("curl -H 'Authorization: Token "))
    answer = subprocess.run([*shlex.split(curl), "-sf"], capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0 and json.loads(answer.stdout)["market"] == demo.BITSTAMP.market, answer
    client = next(line for line in lines if line.startswith(".venv/bin/python docs/examples/ws_client.py "))
    pushed = subprocess.run(
        [*shlex.split(client), "1"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120
    )
    assert pushed.returncode == 0, pushed.stderr
    first, second = pushed.stdout.splitlines()
    assert json.loads(first)["type"] == "subscribed" and second.startswith("prediction ")


def demo_env(tmp_path: Path, port: int) -> dict[str, str]:
    """The environment of a demo on the test database, with its own embedded Redis under tmp_path."""
    db = settings.DATABASES["default"]
    test_db_url = urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + db["NAME"]).geturl()
    return {
        # No REDIS_URL: the demo starts its own embedded Redis under tmp_path, so its beat's
        # periodic tasks can never reach the workers of other tests.
        **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
        "DATABASE_URL": test_db_url,
        "PORT": str(port),
        "CRYPTOPRED_DATA_DIR": str(tmp_path),
        "TRAIN_MIN_ROWS": "50",  # 30 min of history
        "CELERY_CONCURRENCY": "1",
    }


def live_replay(demo_pid: int) -> psutil.Process | None:
    for child in psutil.Process(demo_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "replay" in child.cmdline() and any(arg.endswith("bitstamp/live.csv.gz") for arg in child.cmdline()):
                return child
    return None


@pytest.mark.system
@pytest.mark.django_db(transaction=True)
def test_a_killed_demo_replay_resumes_at_its_last_stored_trade(tmp_path):
    """kill -9 of the demo's Bitstamp trades replay: the supervisor restarts it, and it goes on from where it stopped.

    Killed once the replay is GAP_S of event time past the history, a replay that started again from the
    file's beginning would need GAP_S / SPEED of wall time before its next new window: predictions must
    come back sooner than that.
    """
    speed, gap_s = 60, 2400
    port = free_port()
    argv = [sys.executable, "manage.py", "demo", "--history", "30m", "--speed", str(speed), "--promote"]
    env = demo_env(tmp_path, port)
    proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    latest = f"http://127.0.0.1:{port}/api/v1/markets/{demo.BITSTAMP.market}/predictions/latest/"
    try:
        cut = datetime(2015, 5, 1, 2, 0, tzinfo=UTC)  # of the default --book-history 2h
        after_gap = f"{cut + timedelta(seconds=gap_s):%Y-%m-%dT%H:%M:%SZ}"
        before = wait_for_model_prediction(latest, after_gap, time.monotonic() + 300)
        assert before is not None, "no model prediction from the live replay"
        killed = live_replay(proc.pid)
        killed.kill()
        killed.wait(10)
        deadline = time.monotonic() + 60
        while (restarted := live_replay(proc.pid)) is None or restarted.pid == killed.pid:
            assert time.monotonic() < deadline, "the replay was not restarted"
            time.sleep(0.1)
        started = restarted.create_time()
        # A prediction of a window a minute past the last trade stored before the kill: new trades, not ones
        # stored but not yet in a closed window when it died.
        stored = Trade.objects.filter(market__exchange="bitstamp").aggregate(last=Max("ts"))["last"]
        after = wait_for_model_prediction(
            latest, f"{stored + timedelta(seconds=60):%Y-%m-%dT%H:%M:%SZ}", time.monotonic() + 120
        )
        assert after is not None, "no prediction after the restart"
        waited = time.time() - started
        assert waited < gap_s / speed, f"predictions came back {waited:.1f}s after the restart"
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0].decode()
    assert "resuming at the last stored trade" in output, output[-3000:]


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
    # Only what the gates pass is served: Gemini honestly serves "no change".
    assert "data=var/demo db=[] port= args=manage.py demo --reset --history 6h --speed 20\n" in fake_make_demo(tmp_path)
    output = fake_make_demo(tmp_path, CRYPTOPRED_DATA_DIR=str(tmp_path / "mine"), PORT="8123")
    assert f"data={tmp_path / 'mine'} db=[] port=8123 " in output


def test_demo_says_how_to_reset_the_admin_password(settings):
    from cryptopred.system import password_reset_command

    settings.DATA_DIR = settings.BASE_DIR / "var" / "demo"
    command = password_reset_command("admin", embedded_only=True)
    assert command == (
        "DATABASE_URL= REDIS_URL= CRYPTOPRED_DATA_DIR=var/demo .venv/bin/python manage.py changepassword admin"
    )
    settings.DATA_DIR = settings.BASE_DIR / "var"
    assert password_reset_command("admin") == ".venv/bin/python manage.py changepassword admin"


@pytest.mark.django_db
def test_demo_prints_a_bot_token_and_commands_that_work_as_pasted(settings, client):
    settings.API_ANONYMOUS_READ = False  # the printed command must not rely on anonymous read
    settings.DATA_DIR = settings.BASE_DIR / "var" / "demo"
    from cryptopred.system import manage_command

    prefix = manage_command([], embedded_only=True)
    first = demo.bot_token()
    key = demo.bot_token()  # every start rotates: the key printed last is the one that works
    lines = demo.usage("http://127.0.0.1:8000/", key, demo.BITSTAMP.market, prefix)
    assert lines[0].endswith(f": {key}")
    curl = shlex.split(lines[2])
    assert curl[:2] == ["curl", "-H"] and curl[2] == f"Authorization: Token {key}"
    path = urlsplit(curl[3]).path
    assert path == f"/api/v1/markets/{demo.BITSTAMP.market}/predictions/latest/"
    get_or_create_market(demo.BITSTAMP.market)
    name, value = curl[2].split(": ", 1)
    assert client.get(path, headers={name: value}).status_code == 404  # authenticated; no prediction yet
    assert client.get(path, HTTP_AUTHORIZATION=f"Token {first}").status_code == 401
    assert client.get(path).status_code == 401
    ws = shlex.split(lines[4])
    assert ws[1] == "docs/examples/ws_client.py" and (settings.BASE_DIR / ws[1]).exists()
    assert ws[2:] == ["ws://127.0.0.1:8000/ws/v1/stream/", key, demo.BITSTAMP.market]
    assert lines[5].endswith("DATABASE_URL= REDIS_URL= CRYPTOPRED_DATA_DIR=var/demo .venv/bin/python manage.py ...")


@pytest.mark.django_db
def test_predictions_made_before_training_are_dropped_so_latest_is_the_models(client, settings):
    from inference.models import Prediction

    settings.API_ANONYMOUS_READ = True
    market = get_or_create_market(demo.BITSTAMP.market)
    made = datetime(2015, 5, 1, 1, 59, 50, tzinfo=UTC)
    Prediction.objects.create(
        market=market, interval_s=10, horizon=1, made_at=made, target_time=made + timedelta(seconds=10),
        base_close=Decimal(236), price=Decimal(236), lower=Decimal(236), upper=Decimal(236), algorithm="persistence",
        latency_ms=1.0,
    )  # fmt: skip
    url = f"/api/v1/markets/{demo.BITSTAMP.market}/predictions/latest/"
    assert client.get(url).status_code == 200
    assert demo.drop_pretraining_predictions(market) == 1
    assert not Prediction.objects.filter(market=market).exists()
    assert client.get(url).status_code == 404  # nothing until the first live window, then the model's
