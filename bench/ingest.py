"""Ingest throughput: replay >= 1,000,000 real trades at max speed through the full pipeline.

Usage: python bench/ingest.py [FILE] [--trades N] [--keep] [--record]

FILE (default: the bundled Binance ETH/USDT sample) is repeated, each copy shifted
in time by the file's span and in trade id by its id range, until it holds N
trades. The expanded file is replayed exactly like `manage.py replay --speed max`
(trades stored, candles finalized, candles_closed sent to every receiver), then
the same rows are COPYed raw into a table shaped like the trades table, in the
same database, for the ratio. --record writes the figures to bench/results/ingest.json (see bench/record.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
DEFAULT_FILE = ROOT / "data" / "sample" / "binance_ETHUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
MARKET = "bench:ETH-USDT"
TARGET_RATE = 50_000  # trades/s through the pipeline
TARGET_RATIO = 0.6  # of a raw COPY of the same rows


def expand(source: Path, target: Path, trades: int) -> int:
    """Write source repeated (shifted in time and id) to target until it has at least `trades` rows."""
    from markets.trades.file import format_ts, open_text, parse_row

    stream, raw = open_text(source)
    with stream, raw:
        reader = csv.reader(stream)
        next(reader)
        ticks, previous = [], None
        for row in reader:
            tick, rank = parse_row(row, previous)
            previous = (tick.ts, rank)
            ticks.append(tick)
    span = ticks[-1].ts - ticks[0].ts + timedelta(seconds=10)
    id_span = max(t.trade_id for t in ticks) - min(t.trade_id for t in ticks) + 1
    written = 0
    with open(target, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["ts", "price", "qty", "side", "trade_id"])
        copy = 0
        while written < trades:
            shift = span * copy
            for t in ticks:
                ts = format_ts(t.ts + shift, micro=True)
                writer.writerow([ts, t.price, t.qty, t.side, t.trade_id + id_span * copy])
            written += len(ticks)
            copy += 1
    return written


def raw_copy(path: Path) -> float:
    """Seconds to COPY the file's rows into a fresh table shaped like the trades table (indexes included)."""
    from django.db import connection

    from markets.models import Trade

    table = Trade._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_trade_copy")
        cursor.execute(f"CREATE TABLE bench_trade_copy (LIKE {table} INCLUDING ALL)")
        cursor.execute("ALTER TABLE bench_trade_copy ALTER COLUMN market_id SET DEFAULT 0")
        started = time.perf_counter()
        with (
            open(path, "rb") as f,
            cursor.copy(
                "COPY bench_trade_copy (ts, price, qty, side, trade_id) FROM STDIN WITH (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            while block := f.read(1 << 20):
                copy.write(block)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_trade_copy")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help=f"keep the {MARKET} market and its rows")
    parser.add_argument("--record", action="store_true", help="write the figures to bench/results/ingest.json")
    args = parser.parse_args()

    import django

    from core.config import prepare_environment

    prepare_environment()

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from features.models import FeatureRow
    from inference.models import Prediction
    from markets.models import Candle, Market, Trade
    from markets.names import get_or_create_market, parse_market_name
    from pipeline.entry import replay

    call_command("migrate", interactive=False, verbosity=0)
    exchange, base, quote = parse_market_name(MARKET)
    Market.objects.filter(exchange=exchange, base=base, quote=quote).delete()
    with connection.cursor() as cursor:  # an earlier run's deleted rows would slow this one down
        for model in (Trade, Candle, FeatureRow, Prediction):
            cursor.execute(f"VACUUM {model._meta.db_table}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.csv"
        count = expand(args.file, path, args.trades)
        market = get_or_create_market(MARKET)
        started = time.perf_counter()
        stats = replay(path, market)
        pipeline_s = time.perf_counter() - started
        copy_s = raw_copy(path)
    if not args.keep:
        market.delete()
    pipeline_rate, copy_rate = count / pipeline_s, count / copy_s
    name = args.file.relative_to(ROOT) if args.file.is_relative_to(ROOT) else args.file
    print(f"file: {name}, repeated and shifted to {count} trades")
    version = connection.cursor().connection.info.server_version
    print(f"database: PostgreSQL {version // 10000}.{version % 10000}, {os.cpu_count()} CPUs, {datetime.now():%F}")
    print(f"pipeline: {count} trades, {stats.candles} candles in {pipeline_s:.1f}s = {pipeline_rate:,.0f} trades/s")
    print(f"raw COPY: {count} trades in {copy_s:.1f}s = {copy_rate:,.0f} trades/s")
    ratio = pipeline_rate / copy_rate
    print(f"ratio pipeline/COPY: {ratio:.2f}")
    print(
        f"target >= {TARGET_RATE:,} trades/s: {'PASS' if pipeline_rate >= TARGET_RATE else 'FAIL'};"
        f" ratio >= {TARGET_RATIO}: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}"
        f" (load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    if args.record:
        from record import record

        path = record(
            "ingest",
            [
                {
                    "name": f"replay at max speed, {count:,} trades (stored, candles, features, predictions)",
                    "value": round(pipeline_rate),
                    "unit": "trades/s",
                    "target": f">= {TARGET_RATE}",
                    "met": pipeline_rate >= TARGET_RATE,
                },
                {
                    "name": "raw COPY of the same rows",
                    "value": round(copy_rate),
                    "unit": "trades/s",
                    "target": None,
                    "met": None,
                },
                {
                    "name": "replay / raw COPY",
                    "value": round(ratio, 2),
                    "unit": "x (ratio)",
                    "target": f">= {TARGET_RATIO}",
                    "met": ratio >= TARGET_RATIO,
                },
            ],
        )
        print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
