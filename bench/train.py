"""Train + validate every horizon on 7 days of 10-second candles (~60k windows); target <= 30 s per horizon.

Usage: python bench/train.py [--days 7] [--keep]

The candles are real: the bundled Gemini ETH/USD day of trades aggregated to
10 s windows by the markets aggregator, repeated on consecutive days (the only
full day of real ETH/USD trades in the sample). They are stored for the market
bench:ETH-USD in the configured database, then timed:

1. features: compute and store the feature rows of the whole range (the offline store), read once
   for every horizon;
2. train + validate, per horizon of PREDICTION_HORIZONS: what `manage.py train` runs for it with
   TRAIN_WINDOW = the whole range (walk-forward of every candidate next to persistence, final fit,
   serialization, gate, registry), and the total against the first horizon alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptopred.settings")
TRADES = ROOT / "data" / "sample" / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
MARKET = "bench:ETH-USD"
INTERVAL_S = 10


def setup() -> None:
    import django

    from core.config import prepare_environment

    prepare_environment()

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def store_candles(days: int):
    """The real day as 10 s candles, repeated `days` times; returns the market."""
    from markets.models import Candle
    from markets.names import get_or_create_market
    from markets.trades.candles import bars_from_ticks, fill_gaps
    from markets.trades.file import read_trades
    from markets.trades.stored import candle_from_bar

    market = get_or_create_market(MARKET)
    market.candles.all().delete()
    market.feature_rows.all().delete()
    market.model_artifacts.all().delete()
    ticks = [tick for batch in read_trades(TRADES) for tick in batch]
    day = fill_gaps(bars_from_ticks(ticks, INTERVAL_S).values(), INTERVAL_S)
    candles = []
    for k in range(days):
        for bar in day:
            candle = candle_from_bar(market, bar)
            candle.start += timedelta(days=k)
            candles.append(candle)
    Candle.objects.bulk_create(candles, batch_size=5000)
    return market, candles[0].start, candles[-1].start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench market's rows afterwards")
    args = parser.parse_args()
    setup()
    from core import horizons
    from features import store
    from modeling.market_training import resolve_target, train_dataset
    from modeling.training import build_dataset

    market, first, last = store_candles(args.days)
    print(f"{MARKET}: {args.days} days of 10 s candles, {first:%Y-%m-%dT%H:%M:%SZ} → {last:%Y-%m-%dT%H:%M:%SZ}")

    t0 = time.perf_counter()
    batch = store.materialize(market, INTERVAL_S, first, last)
    t_features = time.perf_counter() - t0
    print(f"features: {len(batch)} rows computed and stored in {t_features:.1f} s (once for every horizon)")

    # What train_horizons does after reading the rows, one horizon at a time so that each is timed.
    version, target = resolve_target(market, INTERVAL_S, None)
    window_s = int((last - first).total_seconds()) + INTERVAL_S
    times = []
    for horizon in horizons.configured():
        ds = build_dataset(batch, horizon, target=target)
        t0 = time.perf_counter()
        artifact = train_dataset(market, ds, version, window_s)
        times.append(time.perf_counter() - t0)
        m = artifact.metrics
        print(
            f"horizon {horizon}: train + validate {times[-1]:.1f} s for {len(ds)} rows ({m['validation']['rows']} "
            f"validation windows, {m['validation']['folds']} scored walk-forward folds, {len(m['candidates'])} "
            f"candidates) -> {artifact.status}; {artifact.algorithm} rmse {m['model']['rmse']:.4f} vs persistence "
            f"{m['persistence']['rmse']:.4f}"
        )
    total = sum(times)
    print(
        f"every horizon ({len(times)}): {total:.1f} s of training = {total / times[0]:.2f} x the first horizon "
        f"alone (linear: {len(times)} x); with the features {t_features + total:.1f} s"
    )
    print(f"target <= 30 s per horizon: {'met' if max(times) <= 30 else 'MISSED'}")
    if not args.keep:
        market.delete()


if __name__ == "__main__":
    main()
