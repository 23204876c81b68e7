import csv

from django.core.management.base import BaseCommand

from markets.cli import add_range_arguments, range_options
from markets.trades.export import CANDLE_HEADER, candle_bars, candle_rows


class Command(BaseCommand):
    help = "Candles as CSV on stdout (ts,open,high,low,close,volume,trades), empty windows included."

    def add_arguments(self, parser):
        add_range_arguments(parser)

    def handle(self, *args, **options):
        market, interval_s, start, end = range_options(options)
        writer = csv.writer(self.stdout._out, lineterminator="\n")
        writer.writerow(CANDLE_HEADER)
        writer.writerows(candle_rows(candle_bars(market, interval_s, start, end)))
