import csv

from django.core.management.base import BaseCommand, CommandError

from markets.bookstore import BOOK_HEADER, book_rows, stored_bars
from markets.cli import interval_option, market_option, time_option


class Command(BaseCommand):
    help = (
        "Order-book windows as CSV on stdout (ts,bid_price,bid_qty,ask_price,ask_qty,mid,microprice,"
        "ofi,spread_tw,imbalance_tw,depth_imbalance,updates), one row per stored window."
    )

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
        parser.add_argument("--interval", default="10s", help="a multiple of the market's interval (default 10s)")
        parser.add_argument("--start", help="ISO-8601 UTC, first window start (inclusive)")
        parser.add_argument("--end", help="ISO-8601 UTC, end (exclusive)")

    def handle(self, *args, **options):
        market = market_option(options["market"])
        interval_s = interval_option(options["interval"], market)
        start, end = time_option(options["start"], "--start"), time_option(options["end"], "--end")
        if start is not None and end is not None and end <= start:
            raise CommandError(f"--end: expected a time after --start {options['start']}, got {options['end']!r}")
        writer = csv.writer(self.stdout._out, lineterminator="\n")
        writer.writerow(BOOK_HEADER)
        writer.writerows(book_rows(stored_bars(market, interval_s, start, end)))
