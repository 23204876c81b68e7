"""manage.py backtest --market M [--interval 10s] [--horizon 1] [--target mid|close] [--start ISO] [--end ISO]
[--train-window 6h] [--retrain-every 1h] [--min-rows N] [--fee-bps 0] [--json] [--out predictions.csv]"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from features.engine import TARGETS
from markets.cli import market_option, time_option
from markets.models import Candle
from modeling.backtest import BacktestConfig, run_backtest
from modeling.cli import bps_option, duration_option, metrics_table, positive_int
from modeling.market_training import default_interval, resolve_target
from modeling.training import TrainingError


class Command(BaseCommand):
    help = "Walk-forward backtest over stored candles: retrain, gate and serve exactly as production does."

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="EXCHANGE:BASE-QUOTE")
        parser.add_argument("--interval", help="candle interval, e.g. 10s, 1m (default: the market's)")
        parser.add_argument("--horizon", type=positive_int, default=1, help="windows ahead (default 1)")
        parser.add_argument(
            "--target", choices=TARGETS, help="price to predict (default: mid where the market has a book, else close)"
        )
        parser.add_argument(
            "--start",
            help="ISO-8601, the first predicted window; training data is read from --train-window before it"
            " (default: the first candle + --train-window)",
        )
        parser.add_argument("--end", help="ISO-8601, the last predicted window (default: last candle)")
        parser.add_argument("--train-window", default="6h", help="training data at each retrain (default 6h)")
        parser.add_argument("--retrain-every", default="1h", help="time between retrains (default 1h)")
        parser.add_argument(
            "--min-rows", type=positive_int, help="fewest training rows to train at a retrain (default TRAIN_MIN_ROWS)"
        )
        parser.add_argument(
            "--fee-bps", default="0", help="taker fee per side in basis points, for the taker value (default 0)"
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--out", type=Path, help="write every prediction to this CSV file")

    def handle(self, *args, **options):
        fee_bps = bps_option(options["fee_bps"], "--fee-bps")
        market = market_option(options["market"])
        interval_s = (
            duration_option(options["interval"], "--interval") if options["interval"] else default_interval(market)
        )
        candles = Candle.objects.filter(market=market, interval_s=interval_s, final=True).order_by("start")
        first, last = candles.values_list("start", flat=True).first(), candles.values_list("start", flat=True).last()
        if first is None:
            raise CommandError(f"--market: {market} has no {interval_s}s candles stored")
        train_window_s = duration_option(options["train_window"], "--train-window")
        start = time_option(options["start"], "--start") or first + timedelta(seconds=train_window_s)
        end = time_option(options["end"], "--end") or last
        if options["start"] is None and end <= start:
            raise CommandError(
                f"--train-window ({options['train_window']}) covers all the stored data"
                f" ({first:%Y-%m-%dT%H:%M:%SZ} to {last:%Y-%m-%dT%H:%M:%SZ}): nothing left to predict"
            )
        if end <= start:
            raise CommandError(f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})")
        try:
            _, target = resolve_target(market, interval_s, options["target"])
        except TrainingError as exc:
            raise CommandError(f"--target: {exc}") from None
        config = BacktestConfig(
            interval_s=interval_s,
            horizon=options["horizon"],
            train_window_s=train_window_s,
            retrain_every_s=duration_option(options["retrain_every"], "--retrain-every"),
            margin=settings.PROMOTION_MARGIN,
            significance=settings.PROMOTION_SIGNIFICANCE,
            folds=settings.TRAIN_FOLDS,
            validation_fraction=settings.TRAIN_VALIDATION_FRACTION,
            min_rows=options["min_rows"] or settings.TRAIN_MIN_ROWS,
            target=target,
            fee_bps=fee_bps,
        )
        try:
            result = run_backtest(market, config, start, end)
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        if options["out"]:
            try:
                result.write_csv(options["out"])
            except OSError as exc:
                raise CommandError(f"--out: cannot write {options['out']}: {exc.strerror or exc}") from None
        summary = result.summary()
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        promoted = sum(1 for r in summary["retrains"] if r.get("promoted"))
        self.stdout.write(
            f"{summary['market']} {interval_s}s +{config.horizon}: {summary['rows']} predictions "
            f"{summary['start']} → {summary['end']}, {len(summary['retrains'])} retrains, {promoted} promoted"
        )
        rows = {"served": summary["served"], "persistence": summary["persistence"]}
        rows |= {f"  served by {k}": v for k, v in summary["by_algorithm"].items()}
        self.stdout.write(metrics_table(rows))
        d = summary["direction"]
        if d["moved_rows"]:
            line = (
                f"target {summary['target']}: direction on {d['moved_rows']} moved windows: accuracy"
                f" {d['accuracy']:.4f} (base rate {d['base_rate_accuracy']:.4f}"
            )
            if d.get("microprice_accuracy") is not None:
                line += f", sign of microprice - mid {d['microprice_accuracy']:.4f}"
            line += f"), Brier {d['brier']:.5f} vs base rate {d['brier_reference']:.5f}, served by {d['served_by']}"
            self.stdout.write(line)
        if summary["value"] is not None:
            self.stdout.write(value_lines(summary["value"]))


def value_lines(value: dict) -> str:
    """The timing and taker values (modeling.value) in two lines."""
    t, k = value["timing"], value["taker"]
    if not t["decisions"]:
        return "value: no decision with a known book"
    lines = [
        f"timing value on {t['decisions']} decisions, bps of mid per decision (buy / sell):"
        f" served {t['buy_bps']:.3f} / {t['sell_bps']:.3f}, microprice rule {t['rule_buy_bps']:.3f} /"
        f" {t['rule_sell_bps']:.3f}, always wait {t['wait_buy_bps']:.3f} / {t['wait_sell_bps']:.3f},"
        f" foresight {t['oracle_buy_bps']:.3f} / {t['oracle_sell_bps']:.3f}"
    ]
    line = f"taker at threshold {k['threshold']:g}, fee {k['fee_bps']:g} bps per side: trades {k['trades']}"
    if k["trades"]:
        line += (
            f", hit rate {k['hit_rate']:.3f}, {k['pnl_bps_per_trade']:.3f} bps per trade,"
            f" {k['pnl_bps_total']:.1f} bps in all, max drawdown {k['max_drawdown_bps']:.1f} bps"
        )
    return "\n".join([*lines, line])
