"""Shared helpers of the features and modeling tests: real data, fed through the live write path."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.management import call_command

from markets.ingest import Ingestor
from markets.models import Market
from markets.tradefile import read_trades
from pipeline.runner import Guard
from pipeline.step import MarketStep, StepStats

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
GEMINI = SAMPLE / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
BINANCE_ETH_TRADES = SAMPLE / "binance_ETHUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_BTC_TRADES = SAMPLE / "binance_BTCUSDT_trades_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_ETH_1M = SAMPLE / "binance_ETHUSDT_ohlcv1m_2024-08-08_to_2024-08-09.csv.gz"
BINANCE_BTC_1M = SAMPLE / "binance_BTCUSDT_ohlcv1m_2024-08-08_to_2024-08-09.csv.gz"


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def stream(path: Path, market: Market, batch_size: int) -> list[StepStats]:
    """Feed a trades file to the live ingestor in small batches, closing windows by event time.

    The pipeline step runs after each commit, as on a live stream; returns what each run did.
    """
    step, guard = MarketStep(market), Guard(market)
    runs: list[StepStats] = []
    ingestor = Ingestor(market, on_commit=lambda: runs.append(guard.run(step)))
    for batch in read_trades(path, batch_size=batch_size):
        ingestor.ingest(batch, close_until=batch[-1].ts.timestamp())
    ingestor.flush()
    return runs
