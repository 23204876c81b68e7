"""Order-book throughput: replay real L2 snapshots at max speed through book, checksum, windows and storage.

Usage: python bench/book.py [FILE] [--snapshots N] [--keep]

FILE (default: the bundled Bitstamp BTC/USD L2 sample, 20 levels per side) is
repeated, each copy shifted in time by the file's span, until it holds N
snapshots. The expanded file is replayed exactly like `manage.py replay` replays a book file
(each snapshot applied to the order book as level updates: new and changed
levels set, vanished ones deleted; BookWindows features; windows upserted by
COPY in batches), and a Kraken v2 checksum (price 2, qty 8 decimals) of the
book is computed after every snapshot, to measure its cost on real books.

Two rates are printed: levels applied (every level of every snapshot: a
snapshot replaces the book) and changed levels (the level updates an
incremental feed would have sent: levels that differ from the previous
snapshot). The target is for levels applied.
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
DEFAULT_FILE = ROOT / "data" / "sample" / "bitstamp_BTCUSD_book20_2015-05-01_0000-0030.csv.gz"
MARKET = "bench:BTC-USD"
TARGET = 50_000


def expand(source: Path, target: Path, snapshots: int) -> int:
    """Write source's snapshots repeated (shifted in time) to target until it has at least `snapshots`."""
    from markets.book.file import L2_HEADER, read_l2
    from markets.trades.file import format_ts

    book = list(read_l2(source))
    span = book[-1].ts - book[0].ts + timedelta(seconds=10)
    written = 0
    with open(target, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(L2_HEADER)
        copy = 0
        while written < snapshots:
            shift = span * copy
            for snap in book:
                ts = format_ts(snap.ts + shift, micro=True)
                writer.writerows([ts, "bid", i, p, q] for i, (p, q) in enumerate(snap.bids, 1))
                writer.writerows([ts, "ask", i, p, q] for i, (p, q) in enumerate(snap.asks, 1))
            written += len(book)
            copy += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--snapshots", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help=f"keep the {MARKET} market and its windows")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from markets.book.orderbook import kraken_checksum
    from markets.book.replay import replay_book_windows
    from markets.models import BookWindow, Market
    from markets.names import get_or_create_market, parse_market_name

    call_command("migrate", interactive=False, verbosity=0)
    exchange, base, quote = parse_market_name(MARKET)
    Market.objects.filter(exchange=exchange, base=base, quote=quote).delete()
    with connection.cursor() as cursor:  # an earlier run's deleted rows would slow this one down
        cursor.execute(f"VACUUM {BookWindow._meta.db_table}")
    checksum_s = 0.0
    checksums = 0

    def checksum(book) -> None:
        nonlocal checksum_s, checksums
        started = time.perf_counter()
        kraken_checksum(book, 2, 8)
        checksum_s += time.perf_counter() - started
        checksums += 1

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "book.csv"
        count = expand(args.file, path, args.snapshots)
        market = get_or_create_market(MARKET)
        started = time.perf_counter()
        stats = replay_book_windows(path, market, on_book=checksum)
        elapsed = time.perf_counter() - started
    if not args.keep:
        market.delete()
    applied, changed = stats.levels / elapsed, stats.changed / elapsed
    name = args.file.relative_to(ROOT) if args.file.is_relative_to(ROOT) else args.file
    print(f"file: {name}, repeated and shifted to {count} snapshots ({stats.levels} level rows)")
    version = connection.cursor().connection.info.server_version
    print(f"database: PostgreSQL {version // 10000}.{version % 10000}, {os.cpu_count()} CPUs, {datetime.now():%F}")
    print(
        f"pipeline: {stats.snapshots} snapshots, {stats.windows} windows in {elapsed:.2f}s ="
        f" {stats.snapshots / elapsed:,.0f} snapshots/s, {applied:,.0f} levels applied/s,"
        f" {changed:,.0f} changed levels/s ({stats.changed / stats.snapshots:.1f} changed per snapshot)"
    )
    print(
        f"checksum: {checksums} Kraken v2 checksums, {checksum_s / checksums * 1e6:.1f} µs each"
        f" ({checksum_s / elapsed:.0%} of the time)"
    )
    print(f"target >= {TARGET:,} level updates/s (levels applied): {'PASS' if applied >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
