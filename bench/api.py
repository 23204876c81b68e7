"""Every GET endpoint of the API under load, next to a trivial ASGI JSON app on the same server, in the same run.

Every GET operation of the OpenAPI schema (path parameters filled in), plus pages
of predictions and candles and the latest prediction with a query parameter.
Both apps run under uvicorn with the options of `manage.py up` (one worker); load
comes from wrk in a separate process (Debian: apt-get install wrk). Without --live
the data does not change during the run: the read cache answers (inference.readcache),
and asks DRF again as each answer nears its lifetime (API_READ_CACHE_TTL_S). With
--live, two markets stream meanwhile (paced replays of real trades at their own pace,
1-s windows, each window's pipeline step in its own thread as a live stream runs it):
the measured market's answers go stale at every one of its steps. --misses measures the
same endpoints with the cache off, each request answered by DRF: what a miss costs.
Targets per endpoint (cached): >= 2,000 req/s, p99 < 50 ms at 32 connections,
>= 0.05x the trivial app's requests/s; with the cache off: >= 500 req/s.
--record writes the figures to bench/results/api.json (api-live.json with --live).

    CRYPTOPRED_DATA_DIR=var/bench .venv/bin/python bench/api.py [--duration 10] [--connections 32] [--misses]
        [--live] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from record import record
from serving import MARKET, ROOT, free_port, market_with_history, setup_django, trade_lines, uvicorn

TRIVIAL_BODY = b'{"ok":true}'
HISTORY_ROWS = 6000  # trades replayed first, to have predictions and a model
BINANCE_BTC = ROOT / "data" / "sample" / "binance_BTCUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
MIN_RPS, MAX_P99_MS, MIN_RATIO, MIN_MISS_RPS = 2000.0, 50.0, 0.05, 500.0


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


def endpoints(market: str, model_id: int) -> list[str]:
    """Every GET operation of the API schema, with its path parameters filled in (and two query variants)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = []
    for path, operations in schema["paths"].items():
        if "get" in operations and path.startswith("/api/v1/"):
            paths.append(path.replace("{market}", market).replace("{pk}", str(model_id)).replace("{id}", str(model_id)))
    # What bots and pages ask with parameters: a page of history, and the latest prediction with a parameter.
    paths += [f"/api/v1/markets/{market}/predictions/?limit=10", f"/api/v1/markets/{market}/candles/?limit=100"]
    paths.append(f"/api/v1/markets/{market}/predictions/latest/?format=json")
    return sorted(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--misses", action="store_true", help="also measure every endpoint with the cache off")
    parser.add_argument("--live", action="store_true", help="measure while two markets stream (paced replays)")
    parser.add_argument("--record", action="store_true", help="write the figures to bench/results/")
    args = parser.parse_args()
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be positive")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (Debian/Ubuntu: sudo apt-get install wrk)")
    setup_django()
    from django.contrib.auth import get_user_model

    from apitokens.models import ApiToken
    from modeling.models import ModelArtifact

    print("replaying real trades to have predictions ...", flush=True)
    market = market_with_history(HISTORY_ROWS, 1)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    ApiToken.objects.filter(user=user, name="bench").delete()  # keys are shown once: a new one per run
    token = ApiToken.objects.issue(user, "bench").key
    model_id = ModelArtifact.objects.filter(market=market).values_list("pk", flat=True).first()

    # Throttling stays on (its Redis round trips are part of the cost), at a rate the load cannot reach.
    env = {"API_THROTTLE_RATE": "100000000/s", "API_ANONYMOUS_READ": "false"}
    paths = endpoints(MARKET, model_id)
    port, trivial_port = free_port(), free_port()
    trivial_url = f"http://127.0.0.1:{trivial_port}/"
    rounds = (2 if args.misses else 1) * len(paths) * (args.duration + 2) + 2 * args.duration + 60
    with uvicorn("api:trivial", trivial_port, app_dir="bench"), streaming(market, rounds) if args.live else nothing():
        wrk(trivial_url, args.connections, 2)  # warm-up: connections, caches, code paths
        base_rps, base_p99 = wrk(trivial_url, args.connections, args.duration)
        cached = measure(port, paths, env, token, args)
        misses = measure(port, paths, {**env, "API_READ_CACHE_TTL_S": "0"}, token, args) if args.misses else {}
    print(f"trivial ASGI JSON app: {base_rps:,.0f} req/s, p99 {base_p99:.2f} ms ({args.connections} connections)")
    figures = [{"name": "trivial ASGI app", "value": round(base_rps), "unit": "req/s", "target": None, "met": None}]
    failed = False
    for path, (rps, p99) in cached.items():
        ok = rps >= MIN_RPS and p99 < MAX_P99_MS and rps >= MIN_RATIO * base_rps
        failed |= not ok
        miss = f"; DRF (cache off): {misses[path][0]:,.0f} req/s, p99 {misses[path][1]:.2f} ms" if misses else ""
        verdict = "PASS" if ok else "FAIL"
        print(f"GET {path}: {rps:,.0f} req/s, p99 {p99:.2f} ms, {rps / base_rps:.3f}x  {verdict}{miss}")
        figures += [
            figure(f"GET {path}", rps, "req/s", ">=", MIN_RPS),
            figure(f"GET {path}, p99", p99, "ms", "<", MAX_P99_MS),
            figure(f"GET {path}, ratio to the trivial app", rps / base_rps, "x (ratio)", ">=", MIN_RATIO),
        ]
        if misses:
            figures.append(figure(f"GET {path}, cache off", misses[path][0], "req/s", ">=", MIN_MISS_RPS))
    slow = [path for path, (rps, _) in misses.items() if rps < MIN_MISS_RPS]
    print(f"every endpoint >= 2,000 req/s, p99 < 50 ms, >= 0.05x trivial: {'FAIL' if failed else 'PASS'}")
    if misses:
        print(f"every endpoint >= 500 req/s with the cache off: {'FAIL: ' + ', '.join(slow) if slow else 'PASS'}")
    if args.record:
        print(f"recorded in {record('api-live' if args.live else 'api', figures)}")


def figure(name: str, value: float, unit: str, comparison: str, bound: float) -> dict:
    met = value >= bound if comparison == ">=" else value < bound
    return {"name": name, "value": round(value, 3), "unit": unit, "target": f"{comparison} {bound:g}", "met": met}


@contextmanager
def nothing():
    yield


@contextmanager
def streaming(market, seconds: int):
    """Two markets stream while the block runs: the bench market goes on with the trades after its history,
    a second one (its reference market, BTC) with the BTC sample; each a paced replay at real time
    (`manage.py replay --speed 1`, its step in its own thread after each window, as a live stream's)."""
    from markets.names import get_or_create_market

    btc = get_or_create_market(MARKET.replace("ETH", "BTC"))
    btc.interval_s = market.interval_s
    btc.save(update_fields=["interval_s"])
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as replays:
        for name, (header, rows) in (("eth", trade_lines()), ("btc", trade_lines(BINANCE_BTC))):
            rows = rows[HISTORY_ROWS:] if name == "eth" else rows
            first = datetime.fromisoformat(rows[0].split(",", 1)[0])
            kept = [r for r in rows if (datetime.fromisoformat(r.split(",", 1)[0]) - first).total_seconds() < seconds]
            path = Path(tmp) / f"{name}.csv"
            path.write_text(header + "".join(kept))
            target = market if name == "eth" else btc
            argv = [sys.executable, "manage.py", "replay", str(path), "--market", target.name, "--speed", "1"]
            replays.enter_context(stopped_at_exit(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)))
        print(f"streaming {market} and {btc} (paced replays, 1-s windows) while measuring", flush=True)
        yield


@contextmanager
def stopped_at_exit(process: subprocess.Popen):
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def measure(port: int, paths: list[str], env: dict, token: str, args) -> dict[str, tuple[float, float]]:
    """(requests/s, p99 ms) of each path on the app under uvicorn with env, after a warm-up of its own."""
    base = f"http://127.0.0.1:{port}"
    results = {}
    with uvicorn("cryptopred.asgi:application", port, env=env):
        for path in paths:
            wrk(base + path, args.connections, 2, token)
            results[path] = wrk(base + path, args.connections, args.duration, token)
    return results


if __name__ == "__main__":
    main()
