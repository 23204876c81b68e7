import time

from django.core.management.base import BaseCommand, CommandError

from markets.cli import market_option
from markets.models import Market
from markets.streams.runner import set_state
from markets.streams.sources.base import SubscriptionRejected
from pipeline.entry import stream_runner


class Command(BaseCommand):
    help = "Run one market's live trade stream in the foreground (Ctrl-C stops it)."

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE, created if missing")
        parser.add_argument("--for", dest="seconds", type=float, help="stop after this many seconds")

    def handle(self, *args, market: str, seconds: float | None, **options):
        target = market_option(market, create=True)
        if seconds is not None and not seconds > 0:
            raise CommandError(f"--for: expected a positive number of seconds, got {seconds}")
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            runner, step = stream_runner(target, keep_going=lambda: deadline is None or time.monotonic() < deadline)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            runner.run()
        except SubscriptionRejected as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            set_state(target, Market.StreamState.STOPPED)
        finally:
            step.stop()
        book = runner.book.stats if runner.book is not None else None
        self.stdout.write(
            f"{target}: {runner.connects} connection(s), stored {runner.stats.stored},"
            f" duplicates {runner.stats.duplicates}, candles {runner.stats.candles},"
            f" malformed frames {runner.malformed}, unused frames {runner.unused}"
            + (
                f", book messages {book.messages}, book windows {book.windows},"
                f" checksum failures {book.checksum_failures}, resyncs {book.resyncs},"
                f" receive-time stamps {book.receive_stamped}"
                if book is not None
                else ""
            )
        )
