"""Fixtures of the modeling tests: two real days of Binance 1-minute ETH and BTC candles.

On the real days the promotion gate's verdict is whatever the data says. Tests that need a known verdict
use ETH candles rebuilt from the real ones with an edge planted in them (a strong reversal of each
minute's return: a model must win), or with it removed (the returns shuffled: nothing to win).
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from markets.models import Market
from markets.names import get_market
from testsupport.data import BINANCE_BTC_1M, BINANCE_ETH_1M
from testsupport.feed import run

ETH = "binance:ETH-USDT"


def import_eth() -> Market:
    """binance:ETH-USDT's two real days of minute candles, with BTC's (its reference market)."""
    run("import_candles", str(BINANCE_BTC_1M), "--market", "binance:BTC-USDT", "--interval", "1m")
    run("import_candles", str(BINANCE_ETH_1M), "--market", ETH, "--interval", "1m")
    return get_market(ETH)


@pytest.fixture
def eth(db) -> Market:
    return import_eth()


REVERSAL = -0.8  # planted: each minute's log return is the real one minus 0.8 times the previous planted one


def rebuilt_eth(path: Path, rows: slice, reversal: float | None, open_price: float | None = None) -> float:
    """Write the real ETH candles of rows with returns rebuilt: the real returns plus a planted reversal, or
    (reversal None) shuffled with a fixed seed. Times and volumes are the real ones; returns the last close."""
    with gzip.open(BINANCE_ETH_1M, "rt", newline="") as f:
        real = list(csv.DictReader(f))[rows]
    closes = np.array([float(r["close"]) for r in real])
    returns = np.diff(np.log(closes), prepend=math.log(float(real[0]["open"])))
    if reversal is None:
        returns = np.random.default_rng(0).permutation(returns)
    close = open_price or float(real[0]["open"])
    planted = 0.0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "open", "high", "low", "close", "volume"])
        for row, r in zip(real, returns, strict=True):
            planted = r + (reversal or 0.0) * planted
            o, close = close, close * math.exp(planted)
            writer.writerow(
                [row["ts"], f"{o:.6f}", f"{max(o, close):.6f}", f"{min(o, close):.6f}", f"{close:.6f}", row["volume"]]
            )
    return close


@pytest.fixture
def edge(db, tmp_path) -> Market:
    """binance:ETH-USDT over the two real days with the reversal planted: a model beats persistence."""
    run("import_candles", str(BINANCE_BTC_1M), "--market", "binance:BTC-USDT", "--interval", "1m")
    rebuilt_eth(tmp_path / "edge.csv", slice(None), REVERSAL)
    run("import_candles", str(tmp_path / "edge.csv"), "--market", ETH, "--interval", "1m")
    return get_market(ETH)
