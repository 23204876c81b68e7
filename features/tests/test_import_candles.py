"""import_candles: real 1-minute OHLCV files in, clear one-line errors for bad input."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError

from features.models import FeatureRow
from markets.models import Candle, Market
from testsupport.data import BINANCE_ETH_1M
from testsupport.feed import run

pytestmark = pytest.mark.django_db


def test_import_real_minute_candles():
    out = run("import_candles", str(BINANCE_ETH_1M), "--market", "binance:ETH-USDT", "--interval", "1m")
    assert "binance:ETH-USDT: 2880 1m candles 2024-08-08T00:00:00Z → 2024-08-09T23:59:00Z" in out
    market = Market.objects.get(exchange="binance", base="ETH", quote="USDT")
    assert market.interval_s == 60  # a market known only from this file takes its interval
    first = Candle.objects.get(market=market, interval_s=60, start=datetime(2024, 8, 8, tzinfo=UTC))
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("2342.79"),
        Decimal("2343.87"),
        Decimal("2338.01"),
        Decimal("2339.38"),
        Decimal("137.2185"),
    )
    assert (first.buy_volume, first.sell_volume, first.trades, first.vwap, first.final) == (0, 0, 0, None, True)
    assert FeatureRow.objects.filter(market=market, interval_s=60).count() == 2880
    # Unknown sides and trade counts are "no information", never NaN.
    row = FeatureRow.objects.get(market=market, interval_s=60, start=datetime(2024, 8, 9, tzinfo=UTC))
    assert row.values["imbalance_6"] == 0 and row.values["trades_z"] == 0 and row.values["vol_60"] > 0
    # Importing again changes nothing.
    run("import_candles", str(BINANCE_ETH_1M), "--market", "binance:ETH-USDT", "--interval", "1m")
    assert Candle.objects.filter(market=market).count() == 2880


def write(path, lines: list[str]) -> str:
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


GOOD = "2024-08-08T00:00:00Z,2342.79,2343.87,2338.01,2339.38,137.2185"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["ts,open,high,low,close", GOOD], ":1: expected header ts,open,high,low,close,volume"),
        (["ts,open,high,low,close,volume", GOOD, "2024-08-08T00:01:00Z,1,2,x,1,1"], ":3: non-numeric value"),
        (["ts,open,high,low,close,volume", "2024-08-08T00:00:30Z,1,2,1,1,1"], ":2: ts 2024-08-08T00:00:30Z is not"),
        (["ts,open,high,low,close,volume", GOOD, GOOD], ":3: ts 2024-08-08T00:00:00Z is not after"),
        (["ts,open,high,low,close,volume", "2024-08-08T00:00:00Z,5,4,3,4,1"], ":2: inconsistent candle"),
        (["ts,open,high,low,close,volume", "2024-08-08T00:00:00,1,1,1,1,1"], ":2: bad ts"),
        (["ts,open,high,low,close,volume", "2024-08-08T00:00:00Z,1,1,1,1"], ":2: expected 6 fields"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, lines, message):
    path = write(tmp_path / "bad.csv.gz", lines)
    with pytest.raises(CommandError) as exc:
        run("import_candles", path, "--market", "binance:ETH-USDT", "--interval", "1m")
    assert str(exc.value).startswith(path) and message in str(exc.value)
    assert not Candle.objects.exists()  # all or nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--market", "ETHUSD", "--interval", "1m"], "--market: ill-formed market 'ETHUSD'"),
        (["--market", f"binance:ETH-{'U' * 17}", "--interval", "1m"], "its quote is 17 characters long, at most 16"),
        (["--market", "binance:ETH-USDT", "--interval", "fast"], "--interval: invalid duration 'fast'"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run("import_candles", str(BINANCE_ETH_1M), *args)


def test_missing_file():
    with pytest.raises(CommandError, match=r"no-such\.csv: no such file"):
        run("import_candles", "no-such.csv", "--market", "binance:ETH-USDT", "--interval", "1m")
