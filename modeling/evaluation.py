"""Forecast evaluation (NumPy only): the metrics behind validation, backtest and live figures, the walk-forward
folds and the gate's significance test."""

from __future__ import annotations

import math

import numpy as np


def evaluate(close: np.ndarray, actual: np.ndarray, price: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict:
    """Errors in price units and basis points, direction on windows that moved, 80 % band coverage.

    Directional accuracy: a forecast of "no move" on a window that moved counts
    as half right (a coin flip), so persistence scores 0.5.
    """
    err = price - actual
    moved = actual != close
    agree = np.where(price == close, 0.5, (np.sign(price - close) == np.sign(actual - close)).astype(float))
    return {
        "rows": len(close),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_bps": float(np.sqrt(np.mean((err / close) ** 2)) * 1e4),
        "mae": float(np.mean(np.abs(err))),
        "mae_bps": float(np.mean(np.abs(err) / close) * 1e4),
        "directional_accuracy": float(np.mean(agree[moved])) if moved.any() else None,
        "moved_rows": int(moved.sum()),
        "coverage_80": float(np.mean((lower <= actual) & (actual <= upper))),
    }


EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] in the log loss


def direction_metrics(
    close: np.ndarray, actual: np.ndarray, p: np.ndarray, reference: np.ndarray | None, event: str = "up"
) -> dict:
    """A probability forecast against what happened, next to a reference probability on the same windows.

    event "up": p is P(up | the target moved), scored on the windows that moved
    (accuracy: the call p > 0.5 is up; p = 0.5 counts as half right);
    event "move": p is P(it moved), scored on every window. Windows without a
    probability (NaN: nothing trained yet) are left out.
    """
    moved = actual != close
    outcome = actual > close if event == "up" else moved
    rows = np.isfinite(p) & (moved if event == "up" else True)
    if reference is not None:
        rows &= np.isfinite(reference)
    out: dict = {"moved_rows" if event == "up" else "rows": int(rows.sum())}
    y = outcome[rows]
    pairs = {"": p[rows]} | ({"_reference": reference[rows]} if reference is not None else {})
    for suffix, q in pairs.items():
        if not len(y):
            out |= {f"accuracy{suffix}": None, f"brier{suffix}": None, f"log_loss{suffix}": None}
            continue
        clipped = np.clip(q, EPS, 1 - EPS)
        right = np.where(q == 0.5, 0.5, ((q > 0.5) == y).astype(float))
        out[f"accuracy{suffix}"] = float(right.mean())
        out[f"brier{suffix}"] = float(np.mean((q - y) ** 2))
        out[f"log_loss{suffix}"] = float(-np.mean(np.where(y, np.log(clipped), np.log(1 - clipped))))
    return out


def sign_test(score: np.ndarray, other: np.ndarray) -> float:
    """Two-sided exact sign test (McNemar's exact test) on paired per-window scores, e.g. right 1 / wrong 0.

    Only the windows where the two differ count; p is the chance of a split at
    least as uneven as the one seen if either were as likely to be the better
    one. 1.0 when they never differ.
    """
    wins, losses = int((score > other).sum()), int((score < other).sum())
    n = wins + losses
    if not n:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def fold_bounds(n: int, folds: int, validation_fraction: float) -> np.ndarray:
    start = int(n * (1 - validation_fraction))
    return np.linspace(start, n, folds + 1).astype(int)


def dm_pvalue(loss: np.ndarray, reference: np.ndarray, horizon: int) -> float:
    """One-sided Diebold-Mariano test: p-value of "loss is on average not lower than reference".

    The variance of the mean loss difference is Newey-West (Bartlett weights)
    with at least n^(1/3) lags: squared errors cluster with volatility, so
    the windows are not independent and a plain t-test would be overconfident.
    """
    d = loss - reference
    n = len(d)
    if n < 2:
        return 1.0
    centered = d - d.mean()
    lags = max(horizon - 1, int(n ** (1 / 3)))
    var = float(centered @ centered) / n
    for k in range(1, min(lags, n - 1) + 1):
        var += 2 * (1 - k / (lags + 1)) * float(centered[k:] @ centered[:-k]) / n
    if var <= 0:  # the same difference on every window: certain; none at all (shrunk to persistence) is no win
        return 0.0 if d.mean() < 0 else 1.0
    t = float(d.mean()) / math.sqrt(var / n)
    return 0.5 * math.erfc(-t / math.sqrt(2))  # standard normal P(Z <= t): small when the loss is lower
