"""manage.py demo: the whole system offline, fed by a replay of real trades."""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from core.config import embedded_watchers
from core.durations import parse_duration
from core.supervisor import Program, Supervisor
from cryptopred.management.commands.up import HOST, prepare, programs
from markets.models import Market
from markets.services import get_or_create_market
from modeling import registry
from modeling.models import ModelArtifact
from modeling.services import train_horizons
from modeling.training import TrainingError
from pipeline.management.commands.replay import parse_speed
from web import demo


class Command(BaseCommand):
    help = (
        "Replay the first --history of the bundled real trades at full speed, train a model per horizon on them, "
        "then run web, worker and beat while the rest is replayed at --speed x real time. Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--speed", default="20", help="replay factor of real time for the live part (default 20)")
        parser.add_argument("--history", default="6h", help="head of the file replayed at once to train on (6h)")
        parser.add_argument("--reset", action="store_true", help=f"delete what {demo.MARKET} already holds")
        parser.add_argument(
            "--promote", action="store_true", help="serve the trained model even if the promotion gate rejects it"
        )
        parser.add_argument("--no-migrate", action="store_true", help="skip applying migrations")

    def handle(self, *args, speed: str, history: str, reset: bool, promote: bool, no_migrate: bool, **options):
        parse_speed(speed)
        try:
            history_s = parse_duration(history)
        except ValueError as exc:
            raise CommandError(f"--history: {exc}") from None
        # The demo is for looking around: pages, API and websocket are readable without logging in.
        os.environ["API_ANONYMOUS_READ"] = "true"
        settings.API_ANONYMOUS_READ = True
        settings.DEFAULT_MARKETS = []  # offline: no exchange stream to add
        # make demo empties DATABASE_URL: the password reset it prints must reach the same embedded server.
        prepare(self.stdout, migrate=not no_migrate, embedded_only=not os.environ.get("DATABASE_URL"))
        market = self.fresh_market(reset)

        sample = settings.BASE_DIR / demo.SAMPLE
        first, rest, cut = demo.split_trades(sample, settings.DATA_DIR / "demo", history_s)
        self.stdout.write(f"demo: replaying {sample.name} up to {cut:%H:%M:%S} UTC at full speed ...")
        call_command("replay", str(first), market=demo.MARKET, stdout=self.stdout, stderr=self.stderr)
        self.stdout.write(f"demo: training {demo.MARKET} on that history ...")
        self.train(market, history_s, promote)
        Market.objects.filter(pk=market.pk).update(enabled=True)
        connection.close()

        replay = [sys.executable, str(settings.BASE_DIR / "manage.py"), "replay", str(rest)]
        live = Program("replay", [*replay, "--market", demo.MARKET, "--speed", speed], once=True)
        url = f"http://{HOST}:{settings.PORT}/"
        self.stdout.write(f"demo: cryptopred on {url} ({demo.MARKET} replayed at {speed}x). Ctrl-C stops.")
        # Offline, so no live exchange streams: the replay job is the market's only feed.
        system = [program for program in programs() if program.name != "streams"]
        Supervisor([*system, live], watchers=embedded_watchers()).run()

    def fresh_market(self, reset: bool) -> Market:
        market = get_or_create_market(demo.MARKET)
        if market.trades.exists():
            if not reset:
                raise CommandError(
                    f"{demo.MARKET} already has trades; run with --reset to delete its data and start over"
                )
            market.delete()
            market = get_or_create_market(demo.MARKET)
        return market

    def train(self, market: Market, history_s: int, promote: bool) -> None:
        try:
            artifacts = train_horizons(market, window_s=history_s)
        except TrainingError as exc:
            self.stderr.write(f"demo: no model trained ({exc}); predictions fall back to persistence")
            return
        for artifact in artifacts:
            self.stdout.write(
                f"demo: +{artifact.horizon} model v{artifact.version} {artifact.algorithm} {artifact.status}: "
                f"{artifact.reason}"
            )
            if artifact.status != ModelArtifact.Status.ACTIVE and promote:
                registry.promote(artifact, "demo --promote: served although the promotion gate rejected it")
                self.stdout.write(f"demo: +{artifact.horizon} v{artifact.version} promoted anyway (--promote)")
