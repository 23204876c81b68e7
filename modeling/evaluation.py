"""Forecast evaluation: the one computation behind validation, backtest and live metrics (NumPy only)."""

from __future__ import annotations

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
