import csv

from django.core.management.base import BaseCommand

from markets.cli import market_option, time_option
from markets.trades.export import TRADE_HEADER, trade_rows


class Command(BaseCommand):
    help = "Stored trades as CSV on stdout (ts,price,qty,side,trade_id) in exchange order."

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
        parser.add_argument("--start", help="ISO-8601 UTC (inclusive)")
        parser.add_argument("--end", help="ISO-8601 UTC (exclusive)")

    def handle(self, *args, **options):
        market = market_option(options["market"])
        start, end = time_option(options["start"], "--start"), time_option(options["end"], "--end")
        writer = csv.writer(self.stdout._out, lineterminator="\n")
        writer.writerow(TRADE_HEADER)
        writer.writerows(trade_rows(market, start, end))
