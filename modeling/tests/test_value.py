"""What a direction call is worth (modeling.value): by hand on a tiny book, and on the real Bitstamp book."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.management import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from markets.models import BookWindow
from markets.names import get_or_create_market
from modeling import value
from modeling.value import Quotes, choose_threshold, taker, timing
from pipeline.entry import replay, replay_book
from testsupport.data import BITSTAMP_TRADES, SAMPLE
from testsupport.feed import run

BOOK_30 = SAMPLE / "bitstamp_BTCUSD_book20_2015-05-01_0000-0030.csv.gz"
NAN = float("nan")

# Six decisions: bid, ask, mid, microprice at t; bid, ask at t + h; P(up).
# Row 4 has no P(up) and row 5 no book at t + h: neither is a decision.
BOOK = Quotes(
    bid=np.array([99.0, 99.0, 199.0, 99.0, 99.0, 99.0]),
    ask=np.array([101.0, 101.0, 201.0, 101.0, 101.0, 101.0]),
    mid=np.array([100.0, 100.0, 200.0, 100.0, 100.0, 100.0]),
    micro=np.array([100.5, 99.5, 200.0, 99.8, 100.0, 100.0]),  # rule: up, down, down (a tie), down
    bid_h=np.array([100.0, 97.0, 201.0, 103.0, 100.0, NAN]),
    ask_h=np.array([102.0, 99.0, 203.0, 105.0, 102.0, NAN]),
)
P_UP = np.array([0.7, 0.3, 0.5, 0.6, NAN, 0.9])  # calls: up, down, down (0.5 is not up), up


def test_timing_by_hand():
    # Waiting to buy saves A(t) - A(t+h): -100, +200, -100, -400 bps of the mid;
    # waiting to sell gains B(t+h) - B(t): +100, -200, +100, +400 bps.
    got = timing(P_UP, BOOK)
    expected = {
        "decisions": 4,
        "buy_bps": (200 - 100) / 4,  # the calls wait to buy on rows 1 and 2 (down calls)
        "sell_bps": (100 + 400) / 4,  # and wait to sell on rows 0 and 3 (up calls)
        "rule_buy_bps": (200 - 100 - 400) / 4,  # rows 1, 2, 3
        "rule_sell_bps": 100 / 4,  # row 0
        "wait_buy_bps": (-100 + 200 - 100 - 400) / 4,
        "wait_sell_bps": (100 - 200 + 100 + 400) / 4,
        "oracle_buy_bps": 200 / 4,
        "oracle_sell_bps": (100 + 100 + 400) / 4,
        "captured": (25 + 125) / (50 + 150),
        "rule_captured": (-75 + 25) / (50 + 150),
    }
    assert got == pytest.approx(expected, rel=1e-12)
    empty = timing(np.full(6, NAN), BOOK)  # no P(up) yet: no decision
    assert empty["decisions"] == 0 and empty["buy_bps"] is None and empty["captured"] is None


def test_taker_by_hand():
    # Threshold 0.55: long rows 0 and 3 (P(up) 0.7, 0.6), short row 1 (P(down) 0.7); row 2 stays out.
    # Long 0: B(t+h) - A(t) = 100 - 101 = -100 bps; short 1: B(t) - A(t+h) = 99 - 99 = 0; long 3: 103 - 101 = +200.
    # Fee 10 bps a side: -120, -20, +180; equity -120, -140, +40: the worst drop from a peak (0) is 140.
    got = taker(P_UP, BOOK, 0.55, 10.0)
    assert got == pytest.approx(
        {
            "fee_bps": 10.0,
            "threshold": 0.55,
            "trades": 3,
            "hit_rate": 1 / 3,
            "pnl_bps_per_trade": 40 / 3,
            "pnl_bps_total": 40.0,
            "max_drawdown_bps": 140.0,
        },
        rel=1e-12,
    )
    none = taker(P_UP, BOOK, 0.95, 10.0)
    assert (none["trades"], none["pnl_bps_total"], none["hit_rate"]) == (0, 0.0, None)


def test_threshold_by_hand(monkeypatch):
    # Too few trades for any threshold (MIN_TRADES 10): 0.5.
    assert choose_threshold(P_UP, BOOK, 10.0) == 0.5
    monkeypatch.setattr(value, "MIN_TRADES", 1)
    # Fee 10: 0.5 .. 0.575 trade rows 0, 1, 3 (+40 in all), 0.6 .. 0.675 rows 0 and 1 (-140), above none:
    # the best total, ties to the higher threshold.
    assert choose_threshold(P_UP, BOOK, 10.0) == 0.575
    # Fee 100: -300 - 200 + 0 = -500 against -300 - 200 = -500: every threshold loses; the least, higher wins.
    assert choose_threshold(P_UP, BOOK, 100.0) == 0.675


# The real book, checked against plain Python over the file.


def file_tops(path) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]:
    """(time, best bid, bid qty, best ask, ask qty) of every snapshot of a book file."""
    tops: dict[str, dict] = {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["level"] == "1":
                tops.setdefault(row["ts"], {})[row["side"]] = (Decimal(row["price"]), Decimal(row["qty"]))
    return [
        (datetime.fromisoformat(ts.replace("Z", "+00:00")), *top["bid"], *top["ask"])
        for ts, top in sorted(tops.items())
    ]


def book_at(tops, end: datetime):
    """The newest snapshot before a window's end (one at the end belongs to the next window)."""
    before = [t for t in tops if t[0] < end]
    return before[-1]


@pytest.fixture
def bitstamp(db):
    market = get_or_create_market("bitstamp:BTC-USD")
    replay_book(BOOK_30, market)
    replay(BITSTAMP_TRADES, market)
    return market


ARGS = [
    "--market",
    "bitstamp:BTC-USD",
    "--target",
    "mid",
    "--start",
    "2015-05-01T00:20:00Z",
    "--end",
    "2015-05-01T00:29:00Z",
    "--train-window",
    "20m",
    "--retrain-every",
    "5m",
    "--min-rows",
    "50",
    "--horizon",
    "3",
]


def test_backtest_value_on_the_bitstamp_book(bitstamp, tmp_path):
    out = tmp_path / "predictions.csv"
    result = json.loads(run("backtest", *ARGS, "--fee-bps", "40", "--json", "--out", str(out)))
    got = result["value"]
    with open(out) as f:
        rows = [r for r in csv.DictReader(f) if r["p_up"]]
    tops = file_tops(BOOK_30)
    stamp = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    buy = sell = rule_buy = rule_sell = oracle_buy = oracle_sell = 0.0
    trades: list[float] = []
    threshold, fee = got["taker"]["threshold"], 40.0
    for r in rows:
        made, target = stamp(r["made_at"]), stamp(r["target_time"])
        _, bid, qb, ask, qa = book_at(tops, made)
        _, bid_h, _, ask_h, _ = book_at(tops, target)
        mid = (bid + ask) / 2
        assert mid == Decimal(r["close"])  # the backtest's price is this mid
        save_buy, gain_sell = float((ask - ask_h) / mid) * 1e4, float((bid_h - bid) / mid) * 1e4
        p = float(r["p_up"])
        if p > 0.5:
            sell += gain_sell
        else:
            buy += save_buy
        if qb > qa:  # microprice above the mid: (ask - bid)(qb - qa) / 2(qb + qa) > 0
            rule_sell += gain_sell
        else:
            rule_buy += save_buy
        oracle_buy += max(save_buy, 0.0)
        oracle_sell += max(gain_sell, 0.0)
        if p > threshold:
            trades.append(float((bid_h - ask) / mid) * 1e4 - 2 * fee)
        elif 1 - p > threshold:
            trades.append(float((bid - ask_h) / mid) * 1e4 - 2 * fee)
    n = len(rows)
    assert n > 40 and got["timing"]["decisions"] == n
    for key, total in {
        "buy_bps": buy,
        "sell_bps": sell,
        "rule_buy_bps": rule_buy,
        "rule_sell_bps": rule_sell,
        "oracle_buy_bps": oracle_buy,
        "oracle_sell_bps": oracle_sell,
    }.items():
        assert got["timing"][key] == pytest.approx(total / n, rel=1e-9, abs=1e-12), key
    assert oracle_buy > 0 and oracle_sell > 0
    equity, peak, drawdown = 0.0, 0.0, 0.0
    for pnl in trades:
        equity += pnl
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    k = got["taker"]
    assert k["fee_bps"] == fee and k["trades"] == len(trades) > 0
    assert k["pnl_bps_total"] == pytest.approx(sum(trades), rel=1e-9)
    assert k["pnl_bps_per_trade"] == pytest.approx(sum(trades) / len(trades), rel=1e-9)
    assert k["hit_rate"] == sum(t > 0 for t in trades) / len(trades)
    assert k["max_drawdown_bps"] == pytest.approx(drawdown, rel=1e-9)
    # The threshold was chosen on the training window before --start only.
    chosen = k["chosen_on"]
    assert chosen["threshold"] == threshold and chosen["end"] < "2015-05-01T00:20:00Z"
    assert stamp(chosen["end"]) + timedelta(seconds=10 * 4) <= stamp("2015-05-01T00:20:00Z")


@pytest.mark.parametrize("fee", ["-1", "abc", "nan", "inf", "10001"])
def test_bad_fee(bitstamp, fee):
    with pytest.raises(CommandError, match=r"^--fee-bps: expected basis points from 0 to 10000, got '.*'$"):
        run("backtest", *ARGS, "--fee-bps", fee)


def test_book_quotes_of_windows_far_apart_read_only_around_them(bitstamp, monkeypatch):
    """Clusters of made_at further apart than SPAN_GAP windows: one query of one range each, the same quotes."""
    monkeypatch.setattr(value, "SPAN_GAP", 5)
    first = BookWindow.objects.filter(market=bitstamp, interval_s=10).order_by("start")[0].start
    made_at = [first + timedelta(seconds=10 * k) for k in (3, 1, 2, 60, 61, 150, 66)]  # out of order, a lone one
    with CaptureQueriesContext(connection) as captured:
        quotes = value.book_quotes(bitstamp, 10, made_at, 3)
    assert len(captured.captured_queries) == 1
    assert captured.captured_queries[0]["sql"].count("BETWEEN") == 3  # windows 0..4, 59..67, 149..151
    for i, t in enumerate(made_at):
        one = value.book_quotes(bitstamp, 10, [t], 3)
        got, expected = quotes.subset(np.array([i])), one
        for name in ("bid", "ask", "mid", "micro", "bid_h", "ask_h"):
            assert np.array_equal(getattr(got, name), getattr(expected, name), equal_nan=True), (t, name)
    assert quotes.known().all()
