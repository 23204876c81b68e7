"""GET latest prediction under load, next to a trivial ASGI JSON app on the same server, in the same run.

Both apps run under uvicorn with the options of `manage.py up` (one worker); load
comes from wrk in a separate process (Debian: apt-get install wrk). Targets: p99 <
10 ms at 32 connections, and at least 0.2x the requests/s of the trivial app.

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/api.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

from serving import MARKET, free_port, market_with_history, setup_django, uvicorn

TRIVIAL_BODY = b'{"ok":true}'


async def trivial(scope, receive, send) -> None:
    """The baseline: the least an ASGI app can do to answer with JSON."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": TRIVIAL_BODY})


def wrk(url: str, connections: int, duration: int, token: str | None = None) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk's latency distribution; non-2xx responses fail the run."""
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if token:
        argv[1:1] = ["-H", f"Authorization: Token {token}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: error responses under load:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    args = parser.parse_args()
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be positive")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (Debian/Ubuntu: sudo apt-get install wrk)")
    setup_django()
    from django.contrib.auth import get_user_model

    from apitokens.models import ApiToken

    print("replaying real trades to have predictions ...", flush=True)
    market_with_history(6000, 1)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    ApiToken.objects.filter(user=user, name="bench").delete()  # keys are shown once: a new one per run
    token = ApiToken.objects.issue(user, "bench").key

    # Throttling stays on (its Redis round trips are part of the cost), at a rate the load cannot reach.
    env = {"API_THROTTLE_RATE": "100000000/s", "API_ANONYMOUS_READ": "false"}
    port, trivial_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/api/v1/markets/{MARKET}/predictions/latest/"
    trivial_url = f"http://127.0.0.1:{trivial_port}/"
    with uvicorn("cryptopred.asgi:application", port, env=env), uvicorn("api:trivial", trivial_port, app_dir="bench"):
        wrk(url, args.connections, 2, token)  # warm-up: connections, caches, code paths
        wrk(trivial_url, args.connections, 2)
        rps, p99 = wrk(url, args.connections, args.duration, token)
        base_rps, base_p99 = wrk(trivial_url, args.connections, args.duration)
    ratio = rps / base_rps
    print(f"GET latest prediction: {rps:,.0f} req/s, p99 {p99:.2f} ms ({args.connections} connections)")
    print(f"trivial ASGI JSON app: {base_rps:,.0f} req/s, p99 {base_p99:.2f} ms")
    print(
        f"p99 < 10 ms: {'PASS' if p99 < 10 else 'FAIL'}; ratio {ratio:.2f} >= 0.2: {'PASS' if ratio >= 0.2 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
