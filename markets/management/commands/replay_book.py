from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cryptopred.config import ConfigError
from markets.bookfile import BookFileError
from markets.bookreplay import replay_book
from markets.bookstore import feature_levels
from markets.progress import Progress
from markets.services import MarketError, get_or_create_market


class Command(BaseCommand):
    help = (
        "Replay an order-book CSV (top of book ts,bid_price,bid_qty,ask_price,ask_qty or L2 ts,side,level,price,qty;"
        " plain or gzip) into per-window book features."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE, created if missing")

    def handle(self, *args, file: Path, market: str, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        try:
            feature_levels()  # BOOK_FEATURE_LEVELS, checked before anything is written
        except ConfigError as exc:
            raise CommandError(f"configuration error: {exc}") from None
        try:
            target = get_or_create_market(market)
        except MarketError as exc:
            raise CommandError(f"--market: {exc}") from None
        bar = Progress(self.stderr._out, f"replay_book {file.name}", file.stat().st_size)
        try:
            stats = replay_book(file, target, progress=bar.update)
        except BookFileError as exc:
            bar.done()
            raise CommandError(f"{exc} (windows stored before this row stay; re-running overwrites them)") from None
        bar.done()
        self.stdout.write(stats.summary(target))
