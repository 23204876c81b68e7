"""manage.py demo_market: one market of `make demo`, prepared and then replayed live, as one job."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cryptopred import demo
from pipeline.cli import duration_option, parse_speed


class Command(BaseCommand):
    help = (
        "Replay the history of one bundled demo market at full speed, train on it, then replay the rest at --speed x"
        " real time (trades-only markets: one file to pace). manage.py demo runs it next to the live system."
    )

    def add_arguments(self, parser):
        parser.add_argument("market", choices=sorted(demo.BY_MARKET))
        parser.add_argument("--speed", default="20", help="replay factor of real time for the live part (default 20)")
        parser.add_argument("--history", default="6h", help="head of the sample replayed at once to train on (6h)")
        parser.add_argument("--promote", action="store_true", help="serve the model even if the gate rejects it")

    def handle(self, *args, market: str, speed: str, history: str, promote: bool, **options):
        parse_speed(speed)
        sample = demo.BY_MARKET[market]
        if sample.book is not None:
            raise CommandError(f"{market}: book and trades replay live as two jobs; manage.py demo runs them")
        split = demo.prepare_market(sample, duration_option("--history", history), promote, self.stdout, self.stderr)
        call_command("replay", str(split.live[0]), market=market, speed=speed, stdout=self.stdout, stderr=self.stderr)
