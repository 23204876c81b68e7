"""manage.py demo: the whole system offline, fed by a replay of real trades and order book."""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from core.config import embedded_watchers
from core.supervisor import Program, Supervisor
from cryptopred import demo
from cryptopred.demo import BITSTAMP, GEMINI, SAMPLES
from cryptopred.system import HOST, manage_command, prepare, programs
from markets.models import Market
from markets.names import get_or_create_market
from pipeline.cli import duration_option, parse_speed


class Command(BaseCommand):
    help = (
        "Replay the first part of each bundled demo market (Bitstamp BTC/USD trades and book, Gemini ETH/USD trades)"
        " at full speed, train a model per horizon on it, then run web, worker and beat while the rest is replayed"
        " at --speed x real time. Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--speed", default="20", help="replay factor of real time for the live part (default 20)")
        parser.add_argument("--history", default="6h", help=f"head of {GEMINI.market} replayed at once to train on")
        parser.add_argument(
            "--book-history", default="2h", help=f"head of {BITSTAMP.market} replayed at once to train on (2h of 3h)"
        )
        markets = " and ".join(sample.market for sample in SAMPLES)
        parser.add_argument("--reset", action="store_true", help=f"delete what {markets} already hold")
        parser.add_argument(
            "--promote", action="store_true", help="serve the trained model even if the promotion gate rejects it"
        )
        parser.add_argument("--no-migrate", action="store_true", help="skip applying migrations")

    def handle(self, *args, speed: str, history: str, book_history: str, reset: bool, promote: bool, **options):
        parse_speed(speed)
        duration_option("--history", history)
        book_history_s = duration_option("--book-history", book_history)
        # The demo is for looking around: pages, API and websocket are readable without logging in.
        os.environ["API_ANONYMOUS_READ"] = "true"
        settings.API_ANONYMOUS_READ = True
        settings.DEFAULT_MARKETS = []  # offline: no exchange stream to add
        # make demo empties DATABASE_URL: the password reset it prints must reach the same embedded server.
        embedded_only = not os.environ.get("DATABASE_URL")
        prepare(self.stdout, migrate=not options["no_migrate"], embedded_only=embedded_only)
        for sample in SAMPLES:
            self.fresh_market(sample.market, reset)

        # Bitstamp is prepared before the system starts, so its predictions come first; Gemini, with a longer
        # history and a slower model to train, prepares itself in a job of its own next to the running system.
        split = demo.prepare_market(BITSTAMP, book_history_s, promote, self.stdout, self.stderr)
        skilled = demo.direction_model_horizons(get_or_create_market(BITSTAMP.market))
        key = demo.bot_token()
        connection.close()
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        paced = ["--market", BITSTAMP.market, "--speed", speed]
        live = [
            Program(f"bitstamp {kind}", [*manage, "replay", *paced, str(path)], once=True)
            for kind, path in zip(("book", "trades"), split.live, strict=True)
        ]
        gemini = [*manage, "demo_market", GEMINI.market, "--speed", speed, "--history", history]
        live.append(Program("gemini", gemini + ["--promote"] * promote, once=True))

        url = f"http://{HOST}:{settings.PORT}/"
        names = " and ".join(sample.market for sample in SAMPLES)
        self.stdout.write(f"demo: cryptopred on {url} ({names} replayed at {speed}x). Ctrl-C stops.")
        if skilled:
            page = f"{url}markets/{BITSTAMP.market}/?horizon={skilled[0]}"
            self.stdout.write(f"demo: {BITSTAMP.market} serves its direction model at +{skilled[0]}: {page}")
        prefix = manage_command([], embedded_only=embedded_only)
        for line in demo.usage(url, key, BITSTAMP.market, prefix):
            self.stdout.write(line)
        # Offline, so no live exchange streams: the replay jobs are the markets' only feeds.
        system = [program for program in programs() if program.name != "streams"]
        Supervisor([*system, *live], watchers=embedded_watchers()).run()

    def fresh_market(self, name: str, reset: bool) -> Market:
        market = get_or_create_market(name)
        if market.trades.exists() or market.book_windows.exists():
            if not reset:
                raise CommandError(f"{name} already has data; run with --reset to delete its data and start over")
            market.delete()
            market = get_or_create_market(name)
        return market
