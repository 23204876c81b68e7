"""manage.py import_candles FILE --market M --interval 1m"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.durations import parse_duration
from features import store
from features.importer import CandleFileError, import_candles
from markets.models import Market
from markets.names import MarketError, get_or_create_market
from markets.trades.file import file_problem


class Command(BaseCommand):
    help = "Import an OHLCV candle file (ts,open,high,low,close,volume; gzip or plain) and compute its features."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE, created if new")
        parser.add_argument("--interval", required=True, help="candle interval of the file, e.g. 1m, 1s, 10s")

    def handle(self, *args, file: Path, market: str, interval: str, **options):
        try:
            interval_s = parse_duration(interval)
        except ValueError as exc:
            raise CommandError(f"--interval: {exc}") from None
        if problem := file_problem(file):
            raise CommandError(f"{file}: {problem}")
        try:
            target = get_or_create_market(market)
        except MarketError as exc:
            raise CommandError(f"--market: {exc}") from None
        if not target.candles.exclude(interval_s=interval_s).exists() and target.interval_s != interval_s:
            # A market known only from this file: its candles are at the file's interval.
            Market.objects.filter(pk=target.pk).update(interval_s=interval_s)
            target.interval_s = interval_s
        try:
            stats = import_candles(file, target, interval_s)
        except CandleFileError as exc:
            raise CommandError(str(exc)) from None
        if not stats.candles:
            raise CommandError(f"{file}: no candles after the header")
        batch = store.materialize(target, interval_s, stats.first, stats.last, replace=True)
        self.stdout.write(
            f"{target.name}: {stats.candles} {interval} candles {stats.first:%Y-%m-%dT%H:%M:%SZ} → "
            f"{stats.last:%Y-%m-%dT%H:%M:%SZ}, {len(batch)} feature rows ({batch.interval_s}s windows)"
        )
