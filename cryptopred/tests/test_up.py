"""`manage.py up` on a fresh data dir: embedded servers, healthy system, clean Ctrl-C, outages ridden out."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from cryptopred.tests.test_config import ROOT
from testsupport import free_port
from testsupport.data import GEMINI, first_hours, read_rows
from testsupport.up import embedded_env, health_until, start_up

pytestmark = pytest.mark.system

# Outage length of the chaos test; `OUTAGE_S=20 make chaos` runs the 20 s.
OUTAGE_S = float(os.environ.get("OUTAGE_S", "8"))


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def server_pids(data_dir: Path) -> list[int]:
    pids = [int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])]
    pids.append(int((data_dir / "redis" / "redis.pid").read_text()))
    return pids


def test_up_serves_health_and_stops_everything_on_ctrl_c(tmp_path):
    port = free_port()
    up = start_up(tmp_path, port)
    try:
        status, body = health_until(up, port, lambda status, _: status == 200)
        assert status == 200, body
        children = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        servers = server_pids(tmp_path)
        assert all(alive(pid) for pid in servers)

        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    assert up.returncode == 0, output
    assert "Created admin user 'admin' with password" in output
    # The password is printed once; how to set a new one is printed at every start, for this data dir.
    assert f"CRYPTOPRED_DATA_DIR={tmp_path} .venv/bin/python manage.py changepassword admin" in output
    left = [pid for pid in children + servers if alive(pid)]
    assert not left, [psutil.Process(pid).cmdline() for pid in left]


def test_up_rides_out_redis_and_postgres_outages(tmp_path):
    """The embedded servers die under a running system: /healthz names them, they come back, so does the system."""
    from core import embedded

    port = free_port()
    up = start_up(tmp_path, port)
    try:
        status, body = health_until(up, port, lambda status, _: status == 200)
        assert status == 200, body
        redis_pid = int((tmp_path / "redis" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        status, body = health_until(up, port, lambda _, body: body and "redis" in body["failing"], timeout=10)
        assert "redis" in body["failing"], body
        status, body = health_until(up, port, lambda status, _: status == 200, timeout=90)
        assert status == 200, body  # the watcher started Redis again; every process reconnected

        embedded.stop_postgres(tmp_path)
        status, body = health_until(up, port, lambda _, body: body and "database" in body["failing"], timeout=10)
        assert "database" in body["failing"], body
        status, body = health_until(up, port, lambda status, _: status == 200, timeout=90)
        assert status == 200, body
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            output, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            output, _ = up.communicate()
    assert "embedded redis had stopped; started it again" in output
    assert "embedded postgres had stopped; started it again" in output
    assert "stopping everything" not in output


class Subscriber(threading.Thread):
    """A websocket client of one market's predictions that connects again whenever its connection ends."""

    def __init__(self, url: str, market: str):
        super().__init__(daemon=True)
        self.url, self.market = url, market
        self.stopping = threading.Event()
        self.received: list[float] = []  # when each prediction arrived (monotonic)
        self.connects = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with connect(self.url, open_timeout=5) as ws:
                    self.connects += 1
                    self.listen(ws)
            except (OSError, ConnectionClosed, InvalidHandshake):
                self.stopping.wait(0.5)

    def listen(self, ws) -> None:
        subscribe = json.dumps({"action": "subscribe", "channel": "predictions", "market": self.market})
        ws.send(subscribe)
        while not self.stopping.is_set():
            try:
                message = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            if message["type"] == "prediction":
                self.received.append(time.monotonic())
            elif message["type"] == "error":  # the replay has not created the market yet
                self.stopping.wait(0.5)
                ws.send(subscribe)

    def got_one_after(self, moment: float) -> bool:
        return any(t > moment for t in self.received)


def stopped(pids: list[int], seconds: float) -> None:
    """SIGSTOP the processes for seconds, then SIGCONT: a server that answers nothing, not even a refusal."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def postgres_pids(data_dir: Path) -> list[int]:
    postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
    return [postmaster.pid, *(child.pid for child in postmaster.children())]


@pytest.mark.chaos
def test_up_rides_out_redis_and_postgres_stopped_under_a_replay_and_websocket_clients(tmp_path):
    """Redis, then PostgreSQL, stopped for OUTAGE_S each while a paced replay runs and websocket clients listen.

    /healthz names what is stopped; afterwards every client gets new predictions (reconnecting if it must),
    the replay finishes with every trade stored once, and nothing had to be restarted by hand.
    """
    port = free_port()
    up = start_up(tmp_path, port, API_ANONYMOUS_READ="true")
    replay, clients = None, []
    try:
        status, body = health_until(up, port, lambda status, _: status == 200)
        assert status == 200, body
        # Long enough to outlast both outages: these 6 h of trades take about 40 s + 4 outages at this speed.
        trades = first_hours(GEMINI, 6, tmp_path / "trades.csv.gz")
        speed = str(round(6 * 3600 / (40 + 4 * OUTAGE_S)))
        argv = [sys.executable, "manage.py", "replay", str(trades), "--market", "gemini:ETH-USD", "--speed", speed]
        replay = subprocess.Popen(
            argv, cwd=ROOT, env=embedded_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        clients = [Subscriber(f"ws://127.0.0.1:{port}/ws/v1/stream/", "gemini:ETH-USD") for _ in range(2)]
        for client in clients:
            client.start()
        wait(lambda: all(c.received for c in clients), "predictions before the outages")
        for name, pids in (("redis", [int((tmp_path / "redis" / "redis.pid").read_text())]), ("database", None)):
            pids = pids or postgres_pids(tmp_path)
            outage = threading.Thread(target=stopped, args=(pids, OUTAGE_S))
            outage.start()
            status, body = health_until(up, port, lambda _, body, n=name: body and n in body["failing"], OUTAGE_S)
            assert name in body["failing"], body
            outage.join()
            back = time.monotonic()
            status, body = health_until(up, port, lambda status, _: status == 200, timeout=90)
            assert status == 200, body
            print(f"{name} stopped {OUTAGE_S:g}s; healthy {time.monotonic() - back:.1f}s after")
            wait(lambda t=back: all(c.got_one_after(t) for c in clients), f"predictions after the {name} outage")
            print(f"predictions again {time.monotonic() - back:.1f}s after; connects {[c.connects for c in clients]}")
        out, err = replay.communicate(timeout=300)
    finally:
        for client in clients:
            client.stopping.set()
        if replay is not None and replay.poll() is None:
            replay.kill()
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.communicate()
    assert replay.returncode == 0, err[-3000:]
    rows = len(read_rows(trades))
    assert f"read {rows}, stored {rows}, duplicates 0" in out, out
    assert "Traceback" not in err, err[-3000:]


def wait(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
