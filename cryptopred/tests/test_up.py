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


def test_up_serves_health_and_stops_everything_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CRYPTOPRED_DATA_DIR=str(tmp_path), PORT=str(port), DJANGO_SUPERUSER_PASSWORD="")
    up = subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        status, body = None, None
        while time.monotonic() < deadline and up.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                status, body = response.status_code, response.json()
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
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
