"""Fixtures of the modeling tests: two real days of Binance 1-minute ETH and BTC candles."""

from __future__ import annotations

import pytest

from features.tests.helpers import BINANCE_BTC_1M, BINANCE_ETH_1M, run
from markets.models import Market
from markets.services import get_market

ETH = "binance:ETH-USDT"


@pytest.fixture
def eth(transactional_db) -> Market:
    run("import_candles", str(BINANCE_BTC_1M), "--market", "binance:BTC-USDT", "--interval", "1m")
    run("import_candles", str(BINANCE_ETH_1M), "--market", ETH, "--interval", "1m")
    return get_market(ETH)
