"""Time from `make demo` to the first model prediction of the live replay.

Starts `make demo` (embedded PostgreSQL + Redis under var/demo, fresh unless --keep)
on a free loopback port, polls the latest prediction twice a second (under the
anonymous API throttle) until one made by a trained model after the replayed
history appears (its window's candle has closed too), prints the delay, then stops
the demo with Ctrl-C (SIGINT) and waits for it. Bounded: gives up after --timeout.

    .venv/bin/python bench/demo_startup.py [--timeout 180] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from testsupport import free_port  # noqa: E402

MARKET = "gemini:ETH-USD"
LIVE_AFTER = "2021-07-01T06:00:30Z"  # the default 6 h of history ends at 06:00:21


def latest(client: httpx.Client, path: str) -> dict | None:
    try:
        response = client.get(path)
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--keep", action="store_true", help="keep var/demo (measure a warm start)")
    args = parser.parse_args()
    if not args.keep:
        shutil.rmtree(ROOT / "var" / "demo", ignore_errors=True)
    port = free_port()
    log = open(ROOT / "var" / "demo-startup.log", "w")
    started = time.monotonic()
    env = {**os.environ, "PORT": str(port)}
    # Own process group, so the Ctrl-C at the end reaches make and the demo under it, as in a terminal.
    demo = subprocess.Popen(["make", "demo"], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    first_prediction = None
    api = f"http://127.0.0.1:{port}/api/v1/markets/{MARKET}"
    try:
        with httpx.Client(base_url=api, timeout=2) as client:
            while time.monotonic() - started < args.timeout and first_prediction is None:
                time.sleep(0.5)
                prediction = latest(client, "/predictions/latest/")
                if prediction and prediction["model"]["id"] and prediction["made_at"] >= LIVE_AFTER:
                    first_prediction = time.monotonic() - started
                    print(f"first model prediction: {prediction}")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
    if first_prediction is None:
        raise SystemExit(f"no model prediction within {args.timeout:.0f} s; see var/demo-startup.log")
    print(f"make demo -> first live model prediction in the API: {first_prediction:.1f} s")


if __name__ == "__main__":
    main()
