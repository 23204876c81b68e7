"""`manage.py up` in its own process group on a data dir of its own, and its /healthz polled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# /healthz answers within HEALTH_TIMEOUT_S (0.9 s) whatever is down; a loaded machine adds its delays. One that
# waited for a stopped server would take the outage's length.
HEALTHZ_BOUND_S = 4.0


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process on the embedded servers under data_dir."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return {**env, "CRYPTOPRED_DATA_DIR": str(data_dir), **extra}


def start_up(data_dir: Path, port: int, **extra: str) -> subprocess.Popen:
    env = embedded_env(data_dir, PORT=str(port), DJANGO_SUPERUSER_PASSWORD="", **extra)
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
    """Poll /healthz until wanted(status, body); each answer must come within HEALTHZ_BOUND_S."""
    deadline = time.monotonic() + timeout
    status, body = None, None
    while time.monotonic() < deadline and up.poll() is None:
        try:
            started = time.monotonic()
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert time.monotonic() - started < HEALTHZ_BOUND_S, "healthz took too long"
            status, body = response.status_code, response.json()
            if wanted(status, body):
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return status, body
