"""The flow and queue features of v2 against hand computations on a small hand-built book and trade sequence."""

from __future__ import annotations

import numpy as np
import pytest

from features import definitions
from features.frame import BookFrame, CandleFrame
from markets.book.store import FEATURES as BOOK_FIELDS


def frames(book: dict[str, list[float]], buy: list[float], sell: list[float]) -> tuple[BookFrame, CandleFrame]:
    """Frames of len(buy) windows: the book columns given (others 0), trades of the given taker volumes."""
    n = len(buy)
    starts = np.arange(n, dtype=np.int64) * 10
    columns = {name: np.asarray(book.get(name, [0.0] * n), dtype=float) for name in BOOK_FIELDS}
    candles = {name: np.zeros(n) for name in ("open", "high", "low", "close", "volume", "trades", "vwap")}
    candles["buy_volume"], candles["sell_volume"] = np.asarray(buy, float), np.asarray(sell, float)
    observed = np.ones(n, dtype=bool)
    return BookFrame(10, starts, columns, [None] * n, observed), CandleFrame(10, starts, candles, [None] * n, observed)


def test_flow_and_queue_features_by_hand():
    bid = [100.0, 100.0, 100.0, 100.5, 100.5, 100.5, 100.5]
    ask = [100.5, 101.0, 101.0, 101.0, 101.0, 101.0, 100.5 + 0.5]
    qb = [2.0, 2.0, 4.0, 1.0, 1.0, 3.0, 3.0]
    qa = [2.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0]
    mid = [(b + a) / 2 for b, a in zip(bid, ask, strict=True)]
    book = {
        "bid_price": bid,
        "ask_price": ask,
        "bid_qty": qb,
        "ask_qty": qa,
        "mid": mid,
        "microprice": [(b * y + a * x) / (x + y) for b, a, x, y in zip(bid, ask, qb, qa, strict=True)],
        "ofi_levels": [0.0, 1.0, -2.0, 4.0, 0.0, 3.0, np.nan],  # the last window stored before it was recorded
        "spread_tw": [0.5] * 7,
        "updates": [1] * 7,
    }
    b, f = frames(book, buy=[0.0, 1.0, 0.5, 0.0, 2.0, 0.0, 1.5], sell=[0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    out = definitions.book_features(b, f)
    # The unit of the flows: the mean of (qb + qa) / 2 over the last 30 windows (here all there are).
    half_depth = [(x + y) / 2 for x, y in zip(qb, qa, strict=True)]
    # Fewer than 30 windows: no unit yet, so no flow value either.
    assert np.isnan(out["tfi_1"]).all() and np.isnan(out["ofi_levels_1"]).all()
    # Long enough: 30 quiet windows first, then the sequence (the unit is then the mean over the last 30).
    pad = 30
    padded = {k: [v[0]] * pad + list(v) for k, v in book.items()}
    padded["ofi_levels"] = [0.0] * pad + book["ofi_levels"]
    buy, sell = [0.0, 1.0, 0.5, 0.0, 2.0, 0.0, 1.5], [0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5]
    b, f = frames(padded, buy=[0.0] * pad + buy, sell=[0.0] * pad + sell)
    out = {k: v[pad:] for k, v in definitions.book_features(b, f).items()}
    halves = [2.0] * pad + half_depth
    unit = [np.mean(halves[pad + i - 29 : pad + i + 1]) for i in range(7)]
    signed = [-0.5, 1.0, 0.5, -1.0, 2.0, 0.0, 1.0]
    assert out["tfi_1"] == pytest.approx([s / u for s, u in zip(signed, unit, strict=True)])
    assert out["tfi_6"][5] == pytest.approx(sum(signed[0:6]) / unit[5])
    assert out["tfi_6"][6] == pytest.approx(sum(signed[1:7]) / unit[6])
    assert out["ofi_levels_1"][:6] == pytest.approx([o / u for o, u in zip([0, 1, -2, 4, 0, 3], unit, strict=False)])
    assert np.isnan(out["ofi_levels_1"][6]) and np.isnan(out["ofi_levels_6"][6])  # not recorded: missing, not 0
    assert out["ofi_levels_6"][5] == pytest.approx(6 / unit[5])
    # Queue imbalance (qb - qa) / (qb + qa); (microprice - mid) / spread is half of it.
    queue = [(x - y) / (x + y) for x, y in zip(qb, qa, strict=True)]
    assert out["l1_imbalance"] == pytest.approx(queue)
    micro_over_spread = (np.array(book["microprice"]) - mid) / (np.array(ask) - bid)
    assert micro_over_spread == pytest.approx(np.array(queue) / 2)
    # Spread in ticks: the narrowest spread of the last 60 windows is 0.5 (the padding and window 0).
    assert out["spread_ticks"] == pytest.approx([1, 2, 2, 1, 1, 1, 1])
    # Windows since the mid last changed: mids 100.25 x 31, 100.5, 100.5, 100.75, 100.75, 100.75, 100.75.
    assert out["mid_unchanged"].tolist() == [30, 0, 1, 0, 1, 2, 3]


def test_mid_unchanged_is_capped_at_the_lookback():
    b, f = frames({"mid": [1.0] * 100, "bid_price": [1.0] * 100, "ask_price": [2.0] * 100}, [0.0] * 100, [0.0] * 100)
    out = definitions.book_features(b, f)["mid_unchanged"]
    assert out[:3].tolist() == [0, 1, 2] and out[-1] == definitions.LOOKBACK - 1
