import time
from datetime import UTC, datetime, timedelta

import httpx
from django.core.management.base import BaseCommand, CommandError

from core.progress import Progress
from markets.cli import market_option, time_option
from markets.streams.backfill import BackfillError
from markets.streams.sources.base import HistoryError
from pipeline.entry import backfill_market, step_failure


class Command(BaseCommand):
    help = "Store historical trades from the exchange's REST API (resumable per market)."

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE, created if missing")
        parser.add_argument("--since", help="ISO-8601 UTC start")
        parser.add_argument("--hours", type=float, help="start this many hours ago")

    def handle(self, *args, **options):
        if (options["since"] is None) == (options["hours"] is None):
            raise CommandError("give exactly one of --since or --hours")
        market = market_option(options["market"], create=True)
        now = datetime.now(UTC)
        if options["hours"] is not None:
            if not options["hours"] > 0:
                raise CommandError(f"--hours: expected a positive number, got {options['hours']}")
            since = now - timedelta(hours=options["hours"])
        else:
            since = time_option(options["since"], "--since")
            if since >= now:
                raise CommandError(f"--since: {options['since']} is in the future")
        bar = Progress(self.stderr._out, f"backfill {market}", now.timestamp() - since.timestamp())
        started = time.monotonic()
        try:
            stats = backfill_market(market, since, lambda t, s: bar.update(t - since.timestamp(), f"{s.stored} trades"))
        except (BackfillError, HistoryError) as exc:
            bar.done()
            raise CommandError(str(exc)) from None
        except httpx.HTTPError as exc:
            bar.done()
            raise CommandError(
                f"{market.exchange} history API unreachable ({exc}); stored pages are kept, re-run resumes"
            ) from None
        bar.done()
        elapsed = max(time.monotonic() - started, 1e-9)
        self.stdout.write(
            f"{market}: read {stats.read}, stored {stats.stored}, duplicates {stats.duplicates},"
            f" candles {stats.candles}, amended {stats.amended} in {elapsed:.1f}s"
        )
        if failure := step_failure(market, stats):
            raise CommandError(failure)
