"""What a direction call is worth to a trader, after the spread and fees.

Every figure is in basis points of the mid at t, where t is the end of the
window a prediction is made at and t + h the end of its target window; the
prices are the stored top of book at those window ends (markets.models.BookWindow):
bid B and ask A. One implementation for the backtest and the live metrics.

timing: a bot must buy one unit within the horizon. It buys now at A(t) when
P(up) > 1/2 (the price is expected to rise), else waits and buys at A(t + h);
waiting saves A(t) - A(t + h). Selling mirrors it at the bid: it sells now at
B(t) when P(up) <= 1/2, else waits and gains B(t + h) - B(t). A decision to
trade now contributes 0; each figure is the saving summed over the waiting
decisions divided by the number of all decisions. Next to the served P(up):
the microprice rule (up exactly when microprice > mid at t), always waiting,
and perfect foresight (wait exactly when waiting pays).

taker: enter long at A(t) when P(up) > threshold, or short at B(t) when
1 - P(up) > threshold, and close at t + h at B(t + h) (long) or A(t + h)
(short), paying fee_bps on each side. Overlapping positions (h > 1) are
independent units: their P&L adds up.

Pure functions over arrays, but for book_quotes, which reads the stored book windows.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce

import numpy as np
from django.db.models import Q

from markets.models import BookWindow, Market

BPS = 1e4
THRESHOLDS = tuple(round(0.5 + 0.025 * k, 3) for k in range(19))  # 0.5 .. 0.95
MIN_TRADES = 10  # fewest trades on the training part for a threshold to be chosen: fewer is noise
SPAN_GAP = 360  # book_quotes reads across a gap of up to this many windows rather than split its query


@dataclass
class Quotes:
    """Top of book at the window ends t (bid, ask, mid, microprice) and t + h (bid, ask); NaN where unknown."""

    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    micro: np.ndarray
    bid_h: np.ndarray
    ask_h: np.ndarray

    def known(self) -> np.ndarray:
        return np.all(np.isfinite([self.bid, self.ask, self.mid, self.micro, self.bid_h, self.ask_h]), axis=0)

    def subset(self, mask: np.ndarray) -> Quotes:
        return Quotes(*(a[mask] for a in (self.bid, self.ask, self.mid, self.micro, self.bid_h, self.ask_h)))


def rule_p_up(q: Quotes) -> np.ndarray:
    """The microprice rule's call as a P(up) to score: 0.75 when microprice > mid, else 0.25; NaN unknown."""
    return np.where(np.isfinite(q.micro - q.mid), np.where(q.micro > q.mid, 0.75, 0.25), np.nan)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def timing(p_up: np.ndarray, q: Quotes) -> dict:
    """The timing value of the served P(up), the microprice rule, always waiting and foresight (see module doc).

    Decisions are the rows with a P(up) and both books known. captured (and
    rule_captured) is the share of foresight's buy + sell value obtained.
    """
    rows = np.isfinite(p_up) & q.known()
    p, q = p_up[rows], q.subset(rows)
    n = len(p)
    out: dict = {"decisions": n}
    keys = ("buy_bps", "sell_bps", "rule_buy_bps", "rule_sell_bps", "wait_buy_bps", "wait_sell_bps")
    if not n:
        return out | dict.fromkeys((*keys, "oracle_buy_bps", "oracle_sell_bps", "captured", "rule_captured"))
    buy = (q.ask - q.ask_h) / q.mid * BPS  # what waiting to buy saves
    sell = (q.bid_h - q.bid) / q.mid * BPS  # what waiting to sell gains
    for prefix, up in (("", p > 0.5), ("rule_", q.micro > q.mid), ("wait_", None)):
        wait_buy = np.ones(n, dtype=bool) if up is None else ~up
        wait_sell = np.ones(n, dtype=bool) if up is None else up
        out[f"{prefix}buy_bps"] = float(buy[wait_buy].sum() / n)
        out[f"{prefix}sell_bps"] = float(sell[wait_sell].sum() / n)
    out["oracle_buy_bps"] = float(np.maximum(buy, 0).sum() / n)
    out["oracle_sell_bps"] = float(np.maximum(sell, 0).sum() / n)
    oracle = out["oracle_buy_bps"] + out["oracle_sell_bps"]
    out["captured"] = _share(out["buy_bps"] + out["sell_bps"], oracle)
    out["rule_captured"] = _share(out["rule_buy_bps"] + out["rule_sell_bps"], oracle)
    return out


def trade_pnl(p_up: np.ndarray, q: Quotes, threshold: float, fee_bps: float) -> np.ndarray:
    """Net P&L in bps of each row's taker trade at threshold; NaN where it does not trade (or cannot)."""
    long, short = p_up > threshold, 1 - p_up > threshold  # P(down) > threshold: exact where 1 - threshold is not
    gross = np.where(long, q.bid_h - q.ask, np.where(short, q.bid - q.ask_h, np.nan)) / q.mid * BPS
    return np.where(q.known(), gross - 2 * fee_bps, np.nan)


def taker(p_up: np.ndarray, q: Quotes, threshold: float, fee_bps: float) -> dict:
    """The taker strategy's trades at threshold, in time order (rows are in time order)."""
    pnl = trade_pnl(p_up, q, threshold, fee_bps)
    pnl = pnl[np.isfinite(pnl)]
    out: dict = {"fee_bps": fee_bps, "threshold": threshold, "trades": len(pnl)}
    if not len(pnl):
        return out | {"hit_rate": None, "pnl_bps_per_trade": None, "pnl_bps_total": 0.0, "max_drawdown_bps": 0.0}
    equity = np.cumsum(pnl)
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:]
    return out | {
        "hit_rate": float((pnl > 0).mean()),
        "pnl_bps_per_trade": float(pnl.mean()),
        "pnl_bps_total": float(equity[-1]),
        "max_drawdown_bps": float((peak - equity).max()),
    }


def choose_threshold(p_up: np.ndarray, q: Quotes, fee_bps: float) -> float:
    """The threshold of THRESHOLDS with the largest total net P&L on these (training) rows.

    Only thresholds with at least MIN_TRADES trades compete; ties go to the
    higher threshold (fewer trades), and with no threshold trading that much, 0.5.
    When every threshold loses, the one that loses least is chosen: the
    measured P&L then says what the calls are worth at this fee.
    """
    best, best_total = 0.5, -np.inf
    for threshold in THRESHOLDS:
        pnl = trade_pnl(p_up, q, threshold, fee_bps)
        pnl = pnl[np.isfinite(pnl)]
        if len(pnl) >= MIN_TRADES and pnl.sum() >= best_total:
            best, best_total = threshold, float(pnl.sum())
    return best


def _spans(starts: list[datetime], targets: list[datetime], step: timedelta) -> Q:
    """The ranges of window starts from each start to its target, joined where under SPAN_GAP windows apart."""
    spans: list[list[datetime]] = []
    for first, last in sorted(zip(starts, targets, strict=True)):
        if spans and first - spans[-1][1] <= SPAN_GAP * step:
            spans[-1][1] = max(spans[-1][1], last)
        else:
            spans.append([first, last])
    return reduce(operator.or_, (Q(start__range=(first, last)) for first, last in spans))


def book_quotes(market: Market, interval_s: int, made_at: list[datetime], horizon: int) -> Quotes:
    """Quotes at each made_at (a window end) and horizon windows later, from the market's stored book windows.

    One query; made_at far apart (e.g. the newest windows of several models, one long retired) read
    only the book around each, not everything in between.
    """
    step = timedelta(seconds=interval_s)
    starts = [t - step for t in made_at]
    targets = [t + (horizon - 1) * step for t in made_at]
    if not made_at:
        return Quotes(*(np.zeros(0) for _ in range(6)))
    rows = (
        BookWindow.objects.filter(market=market, interval_s=interval_s)
        .filter(_spans(starts, targets, step))
        .values_list("start", "bid_price", "ask_price", "mid", "microprice")
    )
    book = {r[0]: [float(v) for v in r[1:]] for r in rows}
    nan = [np.nan] * 4
    now = np.array([book.get(t, nan) for t in starts], dtype=float).reshape(-1, 4)
    later = np.array([book.get(t, nan) for t in targets], dtype=float).reshape(-1, 4)
    return Quotes(now[:, 0], now[:, 1], now[:, 2], now[:, 3], later[:, 0], later[:, 1])
