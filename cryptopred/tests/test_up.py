"""`manage.py up` on a fresh data dir: embedded servers, healthy system, clean Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from cryptopred.tests.test_config import ROOT, free_port


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def server_pids(data_dir: Path) -> list[int]:
    pids = [int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])]
    pids.append(int((data_dir / "redis" / "redis.pid").read_text()))
    return pids


def start_up(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CRYPTOPRED_DATA_DIR=str(data_dir), PORT=str(port), DJANGO_SUPERUSER_PASSWORD="")
    return subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def health_until(up: subprocess.Popen, port: int, wanted, timeout: float = 120.0) -> tuple[int | None, dict | None]:
    """Poll /healthz until wanted(status, body); each answer must come within a second and a half."""
    deadline = time.monotonic() + timeout
    status, body = None, None
    while time.monotonic() < deadline and up.poll() is None:
        try:
            started = time.monotonic()
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert time.monotonic() - started < 1.5, "healthz took too long"
            status, body = response.status_code, response.json()
            if wanted(status, body):
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return status, body


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
