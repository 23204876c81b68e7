"""Training: dataset from feature rows, walk-forward validation, candidates, conformal bands, the gate.

Pure functions over arrays (no database), shared by the train command, the
scheduled task, the backtest and bench/train.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.engine import TARGETS, FeatureBatch
from modeling.direction import DirectionOutcome, train_direction
from modeling.evaluation import dm_pvalue, evaluate, fold_bounds
from modeling.forecast import PERSISTENCE, VOLATILITY_BY_TARGET, Forecaster, volatility_scale

COVERAGE = 0.8
Q_LO, Q_HI = (1 - COVERAGE) / 2, 1 - (1 - COVERAGE) / 2

# Candidate algorithms and their hyper-parameters (stored with each artifact). The signal at these
# horizons is faint, so both are heavily regularized: the alternative is fitting noise.
ALGORITHMS = {
    "ridge": {"alphas": [10.0**k for k in range(1, 7)]},
    "hist_gradient_boosting": {
        "max_iter": 40,
        "learning_rate": 0.05,
        "max_leaf_nodes": 7,
        "min_samples_leaf": 500,
        "max_bins": 63,
        "l2_regularization": 10.0,
        "early_stopping": False,
        "random_state": 0,
    },
}
WINSORIZE = 0.01  # training targets are clipped to their 1 %..99 % quantiles: one crash print is not a pattern


def make_model(algorithm: str):
    if algorithm == "ridge":
        return make_pipeline(StandardScaler(), RidgeCV(**ALGORITHMS["ridge"]))
    return HistGradientBoostingRegressor(**ALGORITHMS[algorithm])


class TrainingError(Exception):
    """Training cannot run (too little data); the message says how much is needed."""


@dataclass
class Dataset:
    """Rows with a full feature vector and a known target: y = log(price[t + horizon] / price[t]).

    price is the target's series: the candle closes ("close") or the book's
    mids at the window ends ("mid"); close holds price[t], what persistence predicts.
    """

    interval_s: int
    horizon: int
    starts: np.ndarray  # epoch seconds of each row's window
    names: list[str]
    X: np.ndarray
    close: np.ndarray
    y: np.ndarray
    target: str = "close"

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Dataset:
        return Dataset(
            self.interval_s,
            self.horizon,
            self.starts[mask],
            self.names,
            self.X[mask],
            self.close[mask],
            self.y[mask],
            self.target,
        )

    @property
    def volatility(self) -> tuple[str, ...]:
        return VOLATILITY_BY_TARGET[self.target]

    def column(self, name: str) -> np.ndarray | None:
        return self.X[:, self.names.index(name)] if name in self.names else None

    @property
    def actual(self) -> np.ndarray:
        return self.close * np.exp(self.y)

    def span(self) -> tuple[datetime, datetime]:
        from features.frame import datetime_from_epoch

        return datetime_from_epoch(self.starts[0]), datetime_from_epoch(self.starts[-1])


def build_dataset(batch: FeatureBatch, horizon: int, require_target: bool = True, target: str = "close") -> Dataset:
    """Rows of batch with every feature known (and, if required, the target's price horizon windows later)."""
    if target not in TARGETS:
        raise TrainingError(f"unknown target {target!r} (expected {' or '.join(TARGETS)})")
    if target == "mid" and batch.mids is None:
        raise TrainingError(f"target mid needs order-book features (v2); these rows are {batch.version}")
    close = batch.price(target)
    future = np.full_like(close, np.nan)
    if horizon < len(close):
        future[: len(close) - horizon] = close[horizon:]
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(future / close)
    ok = np.isfinite(close) & np.all(np.isfinite(batch.matrix), axis=1)
    if require_target:
        ok &= np.isfinite(y)
    starts = np.array([int(s.timestamp()) for s in batch.starts], dtype=np.int64)
    return Dataset(batch.interval_s, horizon, starts[ok], batch.names, batch.matrix[ok], close[ok], y[ok], target)


def band(residuals: np.ndarray) -> tuple[float, float]:
    """Split-conformal 80 % band: the 10 % and 90 % quantiles of out-of-sample (scaled) residuals."""
    return float(np.quantile(residuals, Q_LO)), float(np.quantile(residuals, Q_HI))


def scale_floor(ds: Dataset) -> float:
    """Smallest band scale: the 5 % quantile of positive volatility, so flat stretches keep a band."""
    raw = volatility_scale(ds.X, ds.names, 0.0, ds.volatility)
    positive = raw[raw > 0]
    return float(np.quantile(positive, 0.05)) if len(positive) else 1e-6


def fit(algorithm: str, ds: Dataset) -> object | None:
    if algorithm == PERSISTENCE:
        return None
    lo, hi = np.quantile(ds.y, [WINSORIZE, 1 - WINSORIZE])
    return make_model(algorithm).fit(ds.X, np.clip(ds.y, lo, hi))


@dataclass
class WalkForward:
    """Out-of-sample predictions of one algorithm over the validation folds."""

    raw: np.ndarray  # predicted log returns as the model makes them, validation rows
    returns: np.ndarray  # raw shrunk by the factor fitted on earlier folds
    lower: np.ndarray  # band bounds (log return) from earlier folds' residuals only
    upper: np.ndarray
    residuals: np.ndarray  # (y - prediction) / volatility scale, validation rows
    shrink: float  # the factor fitted on every fold: what the final model is served with


def shrinkage(predicted: np.ndarray, y: np.ndarray) -> float:
    """Least-squares factor on out-of-sample predictions, sum(p y) / sum(p p), clipped to [0, 1].

    A model without skill gets 0 (its predictions are uncorrelated with what
    happened) and collapses to persistence instead of adding noise; 1 keeps
    it as trained: shrinkage never amplifies.
    """
    power = float(np.dot(predicted, predicted))
    if power <= 0:
        return 0.0
    return float(np.clip(np.dot(predicted, y) / power, 0.0, 1.0))


def walk_forward(algorithm: str, ds: Dataset, bounds: np.ndarray, floor: float) -> WalkForward:
    """Train on everything whose target was known before each fold, predict the fold; time order only.

    Each fold's predictions are shrunk by the factor fitted on the earlier
    folds' predictions (0 for the first fold: no evidence yet).
    """
    lo, hi = bounds[0], bounds[-1]
    raw = np.zeros(hi - lo)
    returns = np.zeros(hi - lo)
    y = ds.y[lo:hi]
    for a, b in pairwise(bounds):
        known = ds.starts + ds.horizon * ds.interval_s <= ds.starts[a]
        model = fit(algorithm, ds.subset(known & (np.arange(len(ds)) < a)))
        if model is not None:
            raw[a - lo : b - lo] = model.predict(ds.X[a:b])
            returns[a - lo : b - lo] = shrinkage(raw[: a - lo], y[: a - lo]) * raw[a - lo : b - lo]
    scale = volatility_scale(ds.X[lo:hi], ds.names, floor, ds.volatility)
    residuals = (y - returns) / scale
    lower, upper = np.full(hi - lo, np.nan), np.full(hi - lo, np.nan)
    for a, b in pairwise(bounds[1:]):
        q_lo, q_hi = band(residuals[: a - lo])
        lower[a - lo : b - lo] = returns[a - lo : b - lo] + q_lo * scale[a - lo : b - lo]
        upper[a - lo : b - lo] = returns[a - lo : b - lo] + q_hi * scale[a - lo : b - lo]
    return WalkForward(raw, returns, lower, upper, residuals, shrinkage(raw, y))


@dataclass
class TrainOutcome:
    forecaster: Forecaster  # the chosen candidate, refit on all rows
    metrics: dict  # {"model", "persistence", "active", "candidates", "validation"}
    promote: bool
    reason: str
    params: dict = field(default_factory=dict)
    retire_active: str = ""  # why the active model should stop being served, if it should
    direction: DirectionOutcome | None = None  # P(up | move) and P(move), each behind its own gate
    validation: Validation | None = None  # what judge() needs to compare with another active model


@dataclass
class Validation:
    """The validation rows and the served prices of the best candidate and persistence on them."""

    rows: Dataset
    best: str
    price: np.ndarray
    persistence: np.ndarray


def train(
    ds: Dataset,
    active: Forecaster | None,
    margin: float,
    significance: float,
    folds: int,
    validation_fraction: float,
) -> TrainOutcome:
    """Walk-forward every candidate next to persistence, pick the best, apply the promotion gate.

    Metrics cover folds 2..n: the first fold's out-of-sample residuals only calibrate the bands.
    The best candidate's Diebold-Mariano p-values against persistence and the active model are
    Bonferroni-adjusted for the number of candidates it was picked from.
    """
    bounds = fold_bounds(len(ds), folds, validation_fraction)
    val = ds.subset(np.arange(len(ds)) >= bounds[1])
    offset = bounds[1] - bounds[0]

    def prices(wf: WalkForward) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = val.close
        return tuple(c * np.exp(v[offset:]) for v in (wf.returns, wf.lower, wf.upper))

    floor = scale_floor(ds.subset(np.arange(len(ds)) < bounds[0]))
    runs = {name: walk_forward(name, ds, bounds, floor) for name in (PERSISTENCE, *ALGORITHMS)}
    served = {name: prices(wf) for name, wf in runs.items()}
    candidates = {
        name: evaluate(val.close, val.actual, *p) | {"shrink": runs[name].shrink} for name, p in served.items()
    }
    best = min(ALGORITHMS, key=lambda name: candidates[name]["rmse"])
    model = candidates[best] | {"p_vs_persistence": p_value(val, served[best][0], served[PERSISTENCE][0])}
    calibrated = persistence_forecaster(ds)  # what is served while no model is active
    metrics = {
        "model": model,
        "persistence": candidates[PERSISTENCE]
        | {"band": [calibrated.q_lo, calibrated.q_hi, calibrated.scale_floor], "volatility": list(ds.volatility)},
        "active": None,
        "candidates": candidates,
        "validation": {"rows": len(val), "folds": folds - 1, "start": int(val.starts[0]), "end": int(val.starts[-1])},
    }
    q_lo, q_hi = band(runs[best].residuals)
    forecaster = Forecaster(
        best, fit(best, ds), ds.names, q_lo, q_hi, floor, runs[best].shrink, ds.target, ds.volatility
    )
    direction = train_direction(ds, validation_fraction, significance)
    metrics["direction"] = direction.metrics
    metrics["target"] = ds.target
    outcome = TrainOutcome(
        forecaster,
        metrics,
        False,
        "",
        dict(ALGORITHMS[best]),
        direction=direction,
        validation=Validation(val, best, served[best][0], served[PERSISTENCE][0]),
    )
    judge(outcome, active, margin, significance)
    return outcome


def p_value(val: Dataset, price: np.ndarray, reference: np.ndarray) -> float:
    """Diebold-Mariano p-value of price against reference, Bonferroni-adjusted for the candidates."""
    loss = (price - val.actual) ** 2
    return min(1.0, len(ALGORITHMS) * dm_pvalue(loss, (reference - val.actual) ** 2, val.horizon))


def judge(outcome: TrainOutcome, active: Forecaster | None, margin: float, significance: float) -> None:
    """Apply the promotion gate to outcome against active (None: persistence only); sets its verdict.

    Called again when the active model changed while the candidate was training: the candidate is
    compared with the model it would replace.
    """
    v = outcome.validation
    metrics = outcome.metrics
    model = metrics["model"]
    model.pop("p_vs_active", None)
    metrics["active"] = active_metrics = None
    if active is not None and active.features == v.rows.names and active.target == v.rows.target:
        price, lower, upper = active.predict_prices(v.rows.close, v.rows.X)
        metrics["active"] = active_metrics = evaluate(v.rows.close, v.rows.actual, price, lower, upper)
        model["p_vs_active"] = p_value(v.rows, v.price, price)
    persistence = metrics["candidates"][PERSISTENCE]
    promote, reason = gate(model, persistence, active_metrics, margin, significance)
    outcome.promote, outcome.reason, outcome.retire_active = promote, f"{v.best}: {reason}", ""
    if not promote and active_metrics is not None and active_metrics["rmse"] >= persistence["rmse"]:
        # Serving a model that lost to "price stays the same" on the latest data only adds error.
        outcome.retire_active = (
            f"no longer beats persistence: validation RMSE {active_metrics['rmse']:.6g} vs {persistence['rmse']:.6g}"
        )


def gate(model: dict, persistence: dict, active: dict | None, margin: float, significance: float) -> tuple[bool, str]:
    """Promote only on evidence: validation RMSE beats persistence and the active model by the margin,
    and the Diebold-Mariano p-value of each win is below significance."""
    need = 1 - margin
    text = f"validation RMSE {model['rmse']:.6g} vs persistence {persistence['rmse']:.6g}"
    text += f" (p {model['p_vs_persistence']:.3g})"
    if active is not None:
        text += f" and active {active['rmse']:.6g} (p {model['p_vs_active']:.3g})"
    text += f", margin {margin:.1%}, significance {significance:g}, {model['rows']} windows"
    if not model["rmse"] < persistence["rmse"] * need:
        return False, f"does not beat persistence: {text}"
    if not model["p_vs_persistence"] < significance:
        return False, f"no significant win over persistence: {text}"
    if active is not None and not model["rmse"] < active["rmse"] * need:
        return False, f"does not beat the active model: {text}"
    if active is not None and not model["p_vs_active"] < significance:
        return False, f"no significant win over the active model: {text}"
    return True, f"beats {'persistence and the active model' if active else 'persistence'}: {text}"


def persistence_forecaster(ds: Dataset) -> Forecaster:
    """Price stays the same, with the band of past returns: what is served without a model."""
    floor = scale_floor(ds)
    q_lo, q_hi = band(ds.y / volatility_scale(ds.X, ds.names, floor, ds.volatility))
    return Forecaster(PERSISTENCE, None, ds.names, q_lo, q_hi, floor, target=ds.target, volatility=ds.volatility)
