import time
from pathlib import Path

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from core.db import out_of_resources
from core.progress import Progress
from markets.book.file import BookFileError, file_kind
from markets.models import Market, Trade
from markets.names import MarketError, get_or_create_market, parse_market_name
from markets.trades.file import TradeFileError, file_problem
from pipeline.cli import parse_speed
from pipeline.entry import replay, replay_book, step_failure


class Command(BaseCommand):
    help = (
        "Replay a trades CSV (ts,price,qty,side,trade_id), a top-of-book CSV (ts,bid_price,bid_qty,ask_price,ask_qty)"
        " or an L2 CSV (ts,side,level,price,qty), plain or gzip, detected from the header, through the live pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE, created if missing")
        parser.add_argument("--speed", default="max", help="max (default) or a factor of real time, e.g. 10")

    def handle(self, *args, file: Path, market: str, speed: str, **options):
        factor = parse_speed(speed)
        if problem := file_problem(file):
            raise CommandError(f"{file}: {problem}")
        try:
            kind = file_kind(file)
        except BookFileError as exc:
            raise CommandError(str(exc)) from None
        try:
            exchange, base, quote = parse_market_name(market)
            created = not Market.objects.filter(exchange=exchange, base=base, quote=quote).exists()
            target = get_or_create_market(market)
        except MarketError as exc:
            raise CommandError(str(exc)) from None
        if kind != "trades":
            self.replay_book(file, target, factor)
            return
        bar = Progress(self.stderr._out, f"replay {file.name}", file.stat().st_size)
        started = time.monotonic()
        stats = None
        try:
            stats = replay(file, target, factor, progress=bar.update)
        except TradeFileError as exc:
            raise CommandError(f"{exc} (nothing from this row on was stored; re-running skips stored trades)") from None
        except (DatabaseError, psycopg.Error) as exc:  # COPY is psycopg's own: its errors are not Django's
            if (cause := out_of_resources(exc)) is None:
                raise
            raise CommandError(
                f"{file}: the database ran out of resources: {cause} (the batch being stored was rolled back;"
                " earlier batches stay and re-running skips them)"
            ) from None
        finally:
            bar.done()
            if stats is None and created and not Trade.objects.filter(market=target).exists():
                target.delete()  # a failed replay leaves no empty market behind
        elapsed = max(time.monotonic() - started, 1e-9)
        self.stdout.write(
            f"{target.name}: read {stats.read}, stored {stats.stored}, duplicates {stats.duplicates},"
            f" candles {stats.candles}, amended {stats.amended}, {stats.read / elapsed:,.0f} trades/s"
        )
        if failure := step_failure(target, stats):
            raise CommandError(failure)

    def replay_book(self, file: Path, market, speed: float | None) -> None:
        bar = Progress(self.stderr._out, f"replay {file.name}", file.stat().st_size)
        try:
            stats = replay_book(file, market, progress=bar.update, speed=speed)
        except BookFileError as exc:
            bar.done()
            raise CommandError(f"{exc} (windows stored before this row stay; re-running overwrites them)") from None
        bar.done()
        self.stdout.write(stats.summary(market))
