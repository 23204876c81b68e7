"""manage.py train --market M [--interval 10s] [--horizon 3] [--target mid|close] [--train-window 24h] [--json]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from features.engine import TARGETS
from markets.cli import market_option
from modeling.cli import duration_option, metrics_table, positive_int
from modeling.market_training import train_horizons
from modeling.models import ModelArtifact
from modeling.training import TrainingError


def outcome(artifact: ModelArtifact) -> dict:
    return {
        "horizon": artifact.horizon,
        "model_id": artifact.pk,
        "status": artifact.status,
        "reason": artifact.reason,
        "target": artifact.target,
        "direction_source": artifact.direction_source,
        "direction_model": artifact.direction_model,
        "metrics": artifact.metrics,
    }


class Command(BaseCommand):
    help = (
        "Train a market's models now, one per horizon, on its last TRAIN_WINDOW of candles and apply each one's "
        "promotion gate."
    )

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
        parser.add_argument("--interval", help="candle interval, e.g. 10s, 1m (default: the market's)")
        parser.add_argument(
            "--horizon", type=positive_int, help="windows ahead (default: every one of PREDICTION_HORIZONS)"
        )
        parser.add_argument(
            "--target", choices=TARGETS, help="price to predict (default: mid where the market has a book, else close)"
        )
        parser.add_argument("--train-window", help="data to use, e.g. 24h (default TRAIN_WINDOW)")
        parser.add_argument("--json", action="store_true", help="print the outcomes as a JSON list, one per horizon")

    def handle(self, *args, **options):
        market = market_option(options["market"])
        interval_s = duration_option(options["interval"], "--interval") if options["interval"] else None
        window_s = duration_option(options["train_window"], "--train-window") if options["train_window"] else None
        ahead = (options["horizon"],) if options["horizon"] else ()
        try:
            artifacts = train_horizons(market, interval_s, ahead, window_s, options["target"])
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps([outcome(a) for a in artifacts], indent=2))
            return
        for artifact in artifacts:
            self.report(artifact)

    def report(self, artifact: ModelArtifact) -> None:
        self.stdout.write(f"horizon {artifact.horizon}: model {artifact.pk} ({artifact}): {artifact.status}")
        self.stdout.write(artifact.reason)
        m = artifact.metrics
        self.stdout.write(metrics_table({"persistence": m["persistence"], **m["candidates"], "active": m["active"]}))
        up = m["direction"]["up"]
        served = artifact.direction_model or artifact.direction_source
        self.stdout.write(f"target {artifact.target}; direction P(up): {served}: {up['reason']}")
