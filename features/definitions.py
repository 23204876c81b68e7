"""Feature-set definitions: named functions over a candle frame.

Every feature of row i uses only windows i - LOOKBACK + 1 .. i, and every
rolling statistic is a fixed sequence of element-wise operations, so the value
of a row is bit-for-bit the same whether it is computed over a whole day
(training, backtest) or over the last LOOKBACK windows at a candle close (live).
Rows with less than LOOKBACK windows of history are all-NaN.

Two feature sets: VERSION ("v1", trades only) for every market, and
BOOK_VERSION ("v2" = v1 + the order-book features of book_features) for a
market with book windows. Book window t holds the book as of t's end, the
moment the row of t is predicted from, so the row of t reads book windows
t - LOOKBACK + 1 .. t only, like the candles.
"""

from __future__ import annotations

import numpy as np

from features.frame import BookFrame, CandleFrame

VERSION = "v1"  # trades only
BOOK_VERSION = "v2"  # v1 + order book
VERSIONS = (VERSION, BOOK_VERSION)
FIRST_BOOK_FEATURES = (
    "mid_ret_1",
    "mid_ret_3",
    "mid_ret_6",
    "mid_vol_10",
    "mid_vol_60",
    "micro_dev",
    "l1_imbalance",
    "l1_imbalance_tw",
    "depth_imbalance",
    "ofi_1",
    "ofi_3",
    "ofi_6",
    "spread_rel",
    "spread_tw_rel",
    "depth_l1_z",
    "updates_z",
)  # feature set v2 as first defined
FLOW_BOOK_FEATURES = (
    "ofi_levels_1",
    "ofi_levels_6",
    "tfi_1",
    "tfi_6",
    "spread_ticks",
    "mid_unchanged",
)  # added to v2 later: multi-level OFI, trade flow, spread in ticks, mid age
BOOK_FEATURES = FIRST_BOOK_FEATURES + FLOW_BOOK_FEATURES  # what BOOK_VERSION adds to VERSION, in book_features' order
LOOKBACK = 61  # vol_60 needs 60 one-window returns, i.e. 61 closes
DAY_S = 86400
REFERENCE_NAMES = ("ref_ret_1", "ref_ret_6", "ref_gap_30")


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k windows (NaN where there is no earlier value)."""
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of the last w values, added newest to oldest (same order for every row)."""
    acc = x.copy()
    for k in range(1, w):
        acc = acc + shift(x, k)
    return acc


def rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
    return rolling_sum(x, w) / w


def rolling_std(x: np.ndarray, w: int) -> np.ndarray:
    mean = rolling_mean(x, w)
    return np.sqrt(np.maximum(rolling_mean(x * x, w) - mean * mean, 0.0))


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (no volume, no range): "no information"."""
    safe = np.where(den != 0, den, 1.0)
    return np.where(den != 0, num / safe, 0.0)


def zscore(x: np.ndarray, w: int) -> np.ndarray:
    return ratio(x - rolling_mean(x, w), rolling_std(x, w))


def imbalance(f: CandleFrame, w: int) -> np.ndarray:
    """(buy - sell) / (buy + sell) taker volume over w windows; 0 where the source has no sides."""
    buy, sell = rolling_sum(f["buy_volume"], w), rolling_sum(f["sell_volume"], w)
    return ratio(buy - sell, buy + sell)


def compute(f: CandleFrame, ref: CandleFrame | None = None, book: BookFrame | None = None) -> dict[str, np.ndarray]:
    """All features of VERSION (with book: BOOK_VERSION) for every window of f.

    ref is the reference market and book the market's book windows, both on the same grid as f.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        close, high, low, volume = f["close"], f["high"], f["low"], f["volume"]
        lc = np.log(close)
        r1 = lc - shift(lc, 1)
        out: dict[str, np.ndarray] = {}
        for k in (1, 2, 3, 5, 10, 30):
            out[f"ret_{k}"] = lc - shift(lc, k)
        out["vol_10"] = rolling_std(r1, 10)
        out["vol_60"] = rolling_std(r1, 60)
        out["vol_ratio"] = ratio(out["vol_10"], out["vol_60"])
        out["range_1"] = np.log(high / low)
        out["range_10"] = rolling_mean(out["range_1"], 10)
        out["body"] = np.log(close / f["open"])
        # Where the close sits in the window's range: bid/ask bounce of the last trade.
        out["close_pos"] = ratio(close - low, high - low) - np.where(high > low, 0.5, 0.0)
        out["volume_z"] = zscore(np.log1p(volume), 60)
        out["trades_z"] = zscore(np.log1p(f["trades"]), 60)
        for w in (1, 6, 30):
            out[f"imbalance_{w}"] = imbalance(f, w)
        # Imported candles have no vwap: the typical price stands in for it.
        vwap = np.where(np.isfinite(f["vwap"]), f["vwap"], (high + low + close) / 3)
        out["vwap_dev"] = np.where(volume > 0, np.log(close / vwap), 0.0)
        volume_6 = rolling_sum(volume, 6)
        out["vwap_dev_6"] = np.where(volume_6 > 0, np.log(close / ratio(rolling_sum(vwap * volume, 6), volume_6)), 0.0)
        tod = 2 * np.pi * ((f.starts + f.interval_s) % DAY_S) / DAY_S
        out["tod_sin"], out["tod_cos"] = np.sin(tod), np.cos(tod)
        out.update(reference_features(lc, ref))
    valid = np.arange(len(f)) >= LOOKBACK - 1
    out = {name: np.where(valid & np.isfinite(lc), col, np.nan) for name, col in out.items()}
    if book is not None:
        # The book's rows do not need a trade: a row before the first trade still has them.
        out.update({name: np.where(valid & book.observed, col, np.nan) for name, col in book_features(book, f).items()})
    return out


def book_features(b: BookFrame, f: CandleFrame) -> dict[str, np.ndarray]:
    """The order-book features of BOOK_VERSION; NaN wherever a window they read has no book window.

    - mid_ret_k: log return of the mid over k windows; mid_vol_10/60 its volatility
      (the band's scale when the target is the mid);
    - micro_dev: (microprice - mid) / mid at the window end: where the size at the
      best levels leans the next mid;
    - l1_imbalance (at the end) and l1_imbalance_tw (time-weighted over the window):
      (qb - qa) / (qb + qa) at the best levels; depth_imbalance over BOOK_FEATURE_LEVELS;
    - ofi_k: order-flow imbalance summed over k windows, in units of the mean L1 size
      (qb + qa) / 2 of the last 30 windows, so markets and regimes compare;
    - spread_rel (at the end) and spread_tw_rel: spread / mid;
    - depth_l1_z, updates_z: L1 size and book activity against their last 60 windows;
    - ofi_levels_k: order-flow imbalance over the first BOOK_FEATURE_LEVELS levels
      (markets.book.orderbook.multilevel_order_flow) summed over k windows, in the same
      units as ofi_k; NaN in windows stored before it was recorded;
    - tfi_k: trade-flow imbalance, taker buy minus sell volume over k windows
      (f's candles), in the same units;
    - spread_ticks: the spread at the window end over the narrowest spread at a
      window end of the last 60 windows: the spread in ticks where the book
      touches one tick within the hour (the market's tick is not stored);
    - mid_unchanged: windows since the mid last changed (0: it changed in this
      window), capped at LOOKBACK - 1.

    l1_imbalance is the queue imbalance of Gould & Bonart, and
    (microprice - mid) / spread is exactly l1_imbalance / 2.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mid, micro = b["mid"], b["microprice"]
        qb, qa = b["bid_qty"], b["ask_qty"]
        lm = np.log(mid)
        r1 = lm - shift(lm, 1)
        out: dict[str, np.ndarray] = {}
        for k in (1, 3, 6):
            out[f"mid_ret_{k}"] = lm - shift(lm, k)
        out["mid_vol_10"] = rolling_std(r1, 10)
        out["mid_vol_60"] = rolling_std(r1, 60)
        out["micro_dev"] = (micro - mid) / mid
        out["l1_imbalance"] = ratio(qb - qa, qb + qa)
        out["l1_imbalance_tw"] = b["imbalance_tw"]
        out["depth_imbalance"] = b["depth_imbalance"]
        depth = rolling_mean((qb + qa) / 2, 30)
        for k in (1, 3, 6):
            out[f"ofi_{k}"] = ratio(rolling_sum(b["ofi"], k), depth)
        out["spread_rel"] = (b["ask_price"] - b["bid_price"]) / mid
        out["spread_tw_rel"] = b["spread_tw"] / mid
        out["depth_l1_z"] = zscore(np.log(qb + qa), 60)
        out["updates_z"] = zscore(np.log1p(b["updates"]), 60)
        flow = f["buy_volume"] - f["sell_volume"]
        for k in (1, 6):
            out[f"ofi_levels_{k}"] = ratio(rolling_sum(b["ofi_levels"], k), depth)
            out[f"tfi_{k}"] = ratio(rolling_sum(flow, k), depth)
        spread = b["ask_price"] - b["bid_price"]
        out["spread_ticks"] = ratio(spread, rolling_min(np.where(spread > 0, spread, np.nan), 60))
        out["mid_unchanged"] = unchanged_for(mid, LOOKBACK - 1)
    return out


def rolling_min(x: np.ndarray, w: int) -> np.ndarray:
    """Smallest of the last w values, NaN ignored (NaN where all are)."""
    acc = x.copy()
    for k in range(1, w):
        acc = np.fmin(acc, shift(x, k))
    return acc


def unchanged_for(x: np.ndarray, cap: int) -> np.ndarray:
    """Windows since x last changed: how many windows before each row hold the row's value, up to cap."""
    count = np.zeros(len(x))
    same = np.ones(len(x), dtype=bool)
    for k in range(1, cap + 1):
        same &= shift(x, k) == x
        count += same
    return count


def reference_features(lc: np.ndarray, ref: CandleFrame | None) -> dict[str, np.ndarray]:
    """Returns of the reference market (e.g. BTC for ETH), delayed one window.

    The delay keeps rows point-in-time: the reference window that closes at the
    same instant may not be finalized yet when this market's window closes.
    """
    if ref is None:
        return {name: np.zeros_like(lc) for name in REFERENCE_NAMES}
    rl = shift(np.log(ref["close"]), 1)
    out = {
        "ref_ret_1": rl - shift(rl, 1),
        "ref_ret_6": rl - shift(rl, 6),
        # This market's 30-window return minus the reference's: relative drift between the two.
        "ref_gap_30": (shift(lc, 1) - shift(lc, 31)) - (rl - shift(rl, 30)),
    }
    # No reference history yet (not ingested that far back): no information.
    return {name: np.nan_to_num(col, nan=0.0) for name, col in out.items()}
