"""A trained forecaster: predicts the log return to the horizon plus an 80 % conformal band.

The band is normalized conformal: residual quantiles are measured in units of
the recent volatility, so it widens in turbulent regimes and narrows in calm
ones. The same object is used by training (validation arrays), backtest and
live inference (one feature row), so there is one prediction computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

PERSISTENCE = "persistence"  # the algorithm name of "the price stays the same"
PRICE_QUANTUM = Decimal("1e-8")
VOLATILITY_FEATURES = ("vol_10", "vol_60")
# The band scales with the volatility of the series it predicts: trade closes, or the book's mid.
VOLATILITY_BY_TARGET = {"close": VOLATILITY_FEATURES, "mid": ("mid_vol_10", "mid_vol_60")}


def volatility_scale(
    X: np.ndarray, names: list[str], floor: float, features: tuple[str, ...] | list[str] = VOLATILITY_FEATURES
) -> np.ndarray:
    """Per-row scale of the band: RMS of the short and long volatility, at least floor."""
    cols = [names.index(n) for n in features]
    raw = np.sqrt(np.mean(np.nan_to_num(X[:, cols], nan=0.0) ** 2, axis=1))
    return np.maximum(raw, floor)


@dataclass
class Forecaster:
    """model maps feature rows to log returns; q_lo/q_hi are 10 %/90 % residual quantiles in volatility units.

    shrink scales the model's return towards 0 (persistence) by the factor
    its out-of-sample predictions earned in walk-forward validation. target is
    the price it predicts ("close" or "mid"); volatility names the features
    whose RMS scales the band (VOLATILITY_BY_TARGET).
    """

    algorithm: str
    model: Any  # a fitted scikit-learn regressor, or None for persistence
    features: list[str]
    q_lo: float
    q_hi: float
    scale_floor: float = 0.0  # 0: the band scales with volatility alone
    shrink: float = 1.0
    target: str = "close"
    volatility: tuple[str, ...] = VOLATILITY_FEATURES

    def predict_returns(self, X: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.zeros(len(X))
        # Missing history (None/NaN) counts as "no move", the neutral value of every feature.
        return self.shrink * self.model.predict(np.nan_to_num(X, nan=0.0))

    def predict_prices(self, close: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.predict_returns(X)
        s = volatility_scale(X, self.features, self.scale_floor, self.volatility)
        return close * np.exp(r), close * np.exp(r + self.q_lo * s), close * np.exp(r + self.q_hi * s)

    def vector(self, values: dict) -> np.ndarray:
        return np.array([[np.nan if values.get(n) is None else values[n] for n in self.features]], dtype=float)

    def predict_row(self, close: Decimal, values: dict) -> tuple[Decimal, Decimal, Decimal]:
        """Price, lower and upper for one feature row, as Decimals (close: the target's price now)."""
        price, lower, upper = self.predict_prices(np.array([float(close)]), self.vector(values))
        return tuple(Decimal(repr(float(v[0]))).quantize(PRICE_QUANTUM) for v in (price, lower, upper))

    def payload(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "model": self.model,
            "features": self.features,
            "band": [self.q_lo, self.q_hi, self.scale_floor],
            "shrink": self.shrink,
            "target": self.target,
            "volatility": list(self.volatility),
        }

    @classmethod
    def from_payload(cls, payload: dict) -> Forecaster:
        q_lo, q_hi, floor = (float(v) for v in payload["band"])
        shrink, target = float(payload["shrink"]), str(payload["target"])
        volatility = tuple(payload["volatility"])
        features = list(payload["features"])
        return cls(payload["algorithm"], payload["model"], features, q_lo, q_hi, floor, shrink, target, volatility)
