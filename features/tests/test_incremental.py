"""Features computed live at each candle close equal the same features computed over history."""

from __future__ import annotations

import gzip
import math
from datetime import timedelta

import pytest

from features import definitions, engine
from features.models import FeatureRow
from markets.models import Candle
from markets.names import get_or_create_market
from testsupport.data import BINANCE_BTC_TRADES, BINANCE_ETH_TRADES, GEMINI, first_hours
from testsupport.feed import stream

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_horizon")]  # horizons are not what is tested


def test_live_rows_equal_batch_rows_on_real_trades(tmp_path):
    """Gemini ETH/USD 2021-07-01's first four hours (1,440 windows: warm-up, quiet and busy spells, empty
    windows) streamed 20 trades at a time, then computed over the same span in one go: equal, row for row.
    The rest of the day would repeat the same computation on more windows."""
    market = get_or_create_market("gemini:ETH-USD")
    runs = stream(first_hours(GEMINI, 4, tmp_path / "gemini-4h.csv.gz"), market, batch_size=20)

    live = {r.start: r for r in FeatureRow.objects.filter(market=market, interval_s=10)}
    first, last = min(live), max(live)
    assert len(live) == Candle.objects.filter(market=market, interval_s=10).count() > 1400
    assert all(runs) and len([r for r in runs if r.features]) > 90  # really incremental: about a hundred closes
    assert sum(r.features for r in runs) == len(live)  # each window once

    batch = engine.compute_features(market, 10, first, last)
    assert len(batch) == len(live)
    full = 0
    for i, start in enumerate(batch.starts):
        row = live[start]
        assert row.version == definitions.VERSION
        assert row.close == batch.closes[i]
        assert row.values == batch.values(i), start  # exact: same floats, same None
        full += all(v is not None for v in row.values.values())
    assert full > 1000  # not vacuous: real values, warm-up excepted


def test_point_in_time_later_candles_do_not_change_a_row():
    market = get_or_create_market("gemini:ETH-USD")
    stream(GEMINI, market, batch_size=5000)
    starts = list(Candle.objects.filter(market=market).order_by("start").values_list("start", flat=True))
    t = starts[3000]
    before = engine.compute_features(market, 10, t, t).values(0)
    # A wild price right after t must not leak into t's row.
    Candle.objects.filter(market=market, start__gt=t).update(close=1, high=10**6, low=1, vwap=1)
    assert engine.compute_features(market, 10, t, t).values(0) == before
    after = engine.compute_features(market, 10, t + timedelta(seconds=10), t + timedelta(seconds=10)).values(0)
    assert after["ret_1"] != before["ret_1"]


def test_cross_market_reference_returns_are_one_window_late():
    """Binance ETH/USDT with BTC/USDT ingested: ETH rows carry BTC's previous-window returns."""
    btc, eth = get_or_create_market("binance:BTC-USDT"), get_or_create_market("binance:ETH-USDT")
    stream(BINANCE_BTC_TRADES, btc, batch_size=500)
    stream(BINANCE_ETH_TRADES, eth, batch_size=500)
    rows = list(FeatureRow.objects.filter(market=eth).order_by("start"))
    closes = {c.start: float(c.close) for c in Candle.objects.filter(market=btc)}
    checked = 0
    for row in rows:
        ref = row.values["ref_ret_1"]
        if row.values["ret_30"] is None:
            continue
        t1, t2 = row.start - timedelta(seconds=10), row.start - timedelta(seconds=20)
        assert ref == pytest.approx(math.log(closes[t1] / closes[t2]), rel=1e-9)
        checked += 1
    assert checked >= 5 and any(r.values["ref_ret_1"] for r in rows if r.values["ret_30"] is not None)
    # BTC is its own reference asset: no cross features.
    assert all(r.values["ref_ret_1"] == 0 for r in FeatureRow.objects.filter(market=btc))


def test_rows_reading_amended_candles_are_computed_again(tmp_path):
    """Late BTC trades change finalized candles: BTC rows and the ETH rows that read BTC's returns follow."""
    with gzip.open(BINANCE_BTC_TRADES, "rt") as f:
        header, *rows = f.readlines()
    late = rows[100 : len(rows) * 2 // 3 : 9]
    (tmp_path / "on_time.csv").write_text(header + "".join(r for r in rows if r not in set(late)))
    (tmp_path / "late.csv").write_text(header + "".join(late))
    btc, eth = get_or_create_market("binance:BTC-USDT"), get_or_create_market("binance:ETH-USDT")
    stream(tmp_path / "on_time.csv", btc, batch_size=500)
    stream(BINANCE_ETH_TRADES, eth, batch_size=500)
    before = {(r.market_id, r.start): r.values for r in FeatureRow.objects.all()}

    stream(tmp_path / "late.csv", btc, batch_size=500)
    assert Candle.objects.filter(market=btc, amended__gt=0).count() > 30
    changed = {btc: 0, eth: 0}
    for market in changed:
        live = {r.start: r for r in FeatureRow.objects.filter(market=market)}
        batch = engine.compute_features(market, 10, min(live), max(live))
        assert len(batch) == len(live)
        for i, start in enumerate(batch.starts):
            assert live[start].values == batch.values(i), (market, start)
            changed[market] += live[start].values != before[(market.pk, start)]
    assert changed[btc] > 50 and changed[eth] > 5  # not vacuous: the late trades really changed rows of both markets
