"""What a direction call is worth (modeling.value): by hand on a tiny book."""

from __future__ import annotations

import numpy as np
import pytest

from modeling import value
from modeling.value import Quotes, choose_threshold, taker, timing

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
    assert timing(np.full(6, NAN), BOOK) | {"decisions": 0} == timing(np.full(6, NAN), BOOK)
    assert timing(np.full(6, NAN), BOOK)["buy_bps"] is None


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
