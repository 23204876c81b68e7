import csv

from django.core.management.base import BaseCommand

from markets.book.store import BOOK_HEADER, book_rows, stored_bars
from markets.cli import add_range_arguments, range_options


class Command(BaseCommand):
    help = (
        "Order-book windows as CSV on stdout (ts,bid_price,bid_qty,ask_price,ask_qty,mid,microprice,"
        "ofi,spread_tw,imbalance_tw,depth_imbalance,updates), one row per stored window."
    )

    def add_arguments(self, parser):
        add_range_arguments(parser)

    def handle(self, *args, **options):
        market, interval_s, start, end = range_options(options)
        writer = csv.writer(self.stdout._out, lineterminator="\n")
        writer.writerow(BOOK_HEADER)
        writer.writerows(book_rows(stored_bars(market, interval_s, start, end)))
