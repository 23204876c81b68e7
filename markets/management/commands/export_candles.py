import csv

from django.core.management.base import BaseCommand

from markets.cli import interval_option, market_option, time_option
from markets.export import CANDLE_HEADER, candle_bars, candle_rows


class Command(BaseCommand):
    help = "Candles as CSV on stdout (ts,open,high,low,close,volume,trades), empty windows included."

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
        parser.add_argument("--interval", default="10s", help="a multiple of the market's interval (default 10s)")
        parser.add_argument("--start", help="ISO-8601 UTC, first window start (inclusive)")
        parser.add_argument("--end", help="ISO-8601 UTC, end (exclusive)")

    def handle(self, *args, **options):
        market = market_option(options["market"])
        interval_s = interval_option(options["interval"], market)
        start, end = time_option(options["start"], "--start"), time_option(options["end"], "--end")
        writer = csv.writer(self.stdout._out, lineterminator="\n")
        writer.writerow(CANDLE_HEADER)
        writer.writerows(candle_rows(candle_bars(market, interval_s, start, end)))
