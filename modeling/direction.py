"""The direction forecast: P(the target is higher | it moves) and P(it moves), next to the price.

Two probabilities at the horizon:

- up: fitted on the windows whose target moved, outcome "it went up";
- move: fitted on every window, outcome "it moved at all".

P(up) is chosen among candidates (CANDIDATES), each walked forward and gated
on its own; the served one is the candidate with the lowest walk-forward log
loss among those that pass their gate, else the base rate:

- logistic: an L2-regularized logistic regression (C = 0.05) on standardized
  features; with order-book features (v2) the 16 original book features
  (LOGISTIC_BOOK_FEATURES: on a thin market the trade features are mostly
  "no trade" and only add noise), else every v1 feature;
- microprice: a logistic regression on l1_imbalance alone, which is
  2 (microprice - mid) / spread: the microprice rule's signal made a
  calibrated probability (v2 only);
- boosted: a small, strongly regularized HistGradientBoostingClassifier on
  book and trade-flow features (BOOSTED_FEATURES, v2 only).

P(move) is the logistic candidate's.

Calibration is judged on the walk-forward folds, never on the rows a model
was fitted on: the training window's validation part is cut into FOLDS
folds, each predicted by a model fitted on the rows whose target was known
before it; those out-of-sample probabilities are scored with proper scoring
rules (log loss and Brier, which punish a miscalibrated probability) and
summarised in reliability bins (mean probability against observed frequency).
The regression's own probabilities are served: recalibration maps fitted on
the same folds (Platt scaling, a shrinkage of the logit towards the base
rate) made the walk-forward scores worse on the Bitstamp 00:00-03:00 data,
being fitted on a hundred or so moved windows.

Each probability has its own gate against its base rate, the constant
probability of the training rows (for each fold: of the rows known before
it). A model is served only with evidence: lower walk-forward log loss and
Brier score than the base rate and a one-sided Diebold-Mariano test on the
per-window log-loss differences (Newey-West variance,
modeling.training.dm_pvalue) with p below the significance. The candidates
of P(up) are not Bonferroni-adjusted (unlike the price gate's): on the
01:00-02:00 Bitstamp backtest the adjustment kept a stale model served
through three runs and cost 2 points of accuracy. Like an active
price model, a model that passed stays served through later runs that find
it better but not significantly so, and gives way to the base rate as soon
as a run finds it no better than the base rate ("loses"); see served_run.

Pure functions over arrays; scikit-learn is imported only when fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from features.definitions import FIRST_BOOK_FEATURES, FLOW_BOOK_FEATURES

MODEL = "model"
BASE_RATE = "base rate"
SOURCES = (MODEL, BASE_RATE)
LOGISTIC, MICROPRICE, BOOSTED = "logistic", "microprice", "boosted"
CANDIDATES = (MICROPRICE, LOGISTIC, BOOSTED)  # the simplest first: it wins a tie
MODEL_NAMES = (*CANDIDATES, BASE_RATE)  # what can serve P(up)
C = 0.05  # inverse L2 strength on standardized features: strong, the signal is faint and the windows few
MICROPRICE_C = 1.0  # one feature: two coefficients to fit, little to regularize
# The book features of the logistic candidate: feature set v2 as first defined.
LOGISTIC_BOOK_FEATURES = FIRST_BOOK_FEATURES
MICROPRICE_FEATURES = ("l1_imbalance",)
BOOSTED_FEATURES = (
    "l1_imbalance",
    "l1_imbalance_tw",
    "depth_imbalance",
    "ofi_1",
    *FLOW_BOOK_FEATURES,
    "mid_ret_1",
    "mid_ret_6",
    "updates_z",
)
# Small and slow-learning: a few hundred moved windows per training run.
BOOSTED_PARAMS = {
    "max_iter": 40,
    "learning_rate": 0.05,
    "max_leaf_nodes": 4,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
FOLDS = 10  # walk-forward folds over the validation part: a logistic regression is cheap to refit
EPS = 1e-6  # probabilities are kept in [EPS, 1 - EPS] for the log loss
MIN_CLASS_ROWS = 5  # fewer rows of either outcome: no model, the base rate
RELIABILITY_BINS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)


def direction_features(names: list[str]) -> list[str]:
    """The features of the logistic candidate: the original book features where the rows have them, else all."""
    if all(n in names for n in LOGISTIC_BOOK_FEATURES):
        return list(LOGISTIC_BOOK_FEATURES)
    return list(names)


def candidate_features(name: str, names: list[str]) -> list[str] | None:
    """The features candidate name reads from rows whose columns are names; None where the rows lack them."""
    if name == LOGISTIC:
        return direction_features(names)
    wanted = MICROPRICE_FEATURES if name == MICROPRICE else BOOSTED_FEATURES
    return list(wanted) if all(n in names for n in wanted) else None


def make_classifier(name: str = LOGISTIC):
    if name == BOOSTED:
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(**BOOSTED_PARAMS, random_state=0)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=MICROPRICE_C if name == MICROPRICE else C, max_iter=2000)
    )


def fit_classifier(X: np.ndarray, outcome: np.ndarray, name: str = LOGISTIC) -> Any | None:
    """A fitted classifier of candidate name, or None when either outcome has too few rows to learn from."""
    n_true = int(outcome.sum())
    if min(n_true, len(outcome) - n_true) < MIN_CLASS_ROWS:
        return None
    return make_classifier(name).fit(np.nan_to_num(X, nan=0.0), outcome.astype(int))


def probability(model: Any, X: np.ndarray) -> np.ndarray:
    # Missing history (None/NaN) counts as the neutral value 0, as for the price models.
    return model.predict_proba(np.nan_to_num(X, nan=0.0))[:, 1]


def log_loss(p: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per-window log loss (natural log) of probability p for a true outcome."""
    p = np.clip(p, EPS, 1 - EPS)
    return -np.where(outcome, np.log(p), np.log(1 - p))


def brier(p: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    return (p - outcome.astype(float)) ** 2


def base_rate(outcome: np.ndarray) -> float:
    """Share of true outcomes, with one pseudo-window each way (never exactly 0 or 1; 1/2 without data)."""
    return float((outcome.sum() + 1) / (len(outcome) + 2))


def accuracy(p: np.ndarray, up: np.ndarray) -> float | None:
    """Share of right calls (p > 0.5 calls up); p exactly 0.5 counts as half right."""
    if not len(up):
        return None
    right = np.where(p == 0.5, 0.5, ((p > 0.5) == up).astype(float))
    return float(right.mean())


def reliability(p: np.ndarray, outcome: np.ndarray) -> list[list[float]]:
    """[low, high, mean probability, observed frequency, windows] per non-empty bin of p."""
    out = []
    for low, high in pairwise(RELIABILITY_BINS):
        m = (p >= low) & ((p < high) if high < 1 else (p <= high))
        if m.any():
            out.append([low, high, float(p[m].mean()), float(outcome[m].mean()), int(m.sum())])
    return out


@dataclass
class Component:
    """One served probability (up or move): the base rate, and a classifier where its gate passed."""

    base: float  # the training window's constant probability
    model: Any = None  # a fitted classifier
    source: str = BASE_RATE  # MODEL only when the gate let the model through
    name: str = LOGISTIC  # the candidate the model is
    features: list[str] = field(default_factory=list)  # the columns the model reads

    @property
    def served(self) -> str:
        """The candidate served (a name of CANDIDATES), or BASE_RATE."""
        return self.name if self.source == MODEL and self.model is not None else BASE_RATE

    def predict(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        """The probability for rows X whose columns are names."""
        if self.served == BASE_RATE:
            return np.full(len(X), self.base)
        return probability(self.model, X[:, [names.index(n) for n in self.features]])

    def payload(self) -> dict:
        return {"base": self.base, "model": self.model, "source": self.source, "name": self.name}

    @classmethod
    def from_payload(cls, payload: dict) -> Component:
        return cls(
            float(payload["base"]),
            payload["model"],
            str(payload["source"]),
            str(payload["name"]),
            list(payload["features"]),
        )


@dataclass
class DirectionForecaster:
    """P(up | move) and P(move); each from its model (on the features it names) or its base rate."""

    up: Component
    move: Component

    @property
    def features(self) -> list[str]:
        """Every feature either model reads, in order."""
        return list(dict.fromkeys(self.up.features + self.move.features))

    @property
    def source(self) -> str:
        """The source of the headline probability, P(up): MODEL or BASE_RATE."""
        return self.up.source

    @property
    def model_name(self) -> str:
        """The candidate serving P(up), or BASE_RATE."""
        return self.up.served

    def predict(self, X: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(up | move), P(move)) for rows X whose columns are names."""
        return self.up.predict(X, names), self.move.predict(X, names)

    def predict_row(self, values: dict) -> tuple[float, float]:
        """(P(up | move), P(move)) for one stored feature row (its values by name)."""
        names = self.features
        X = np.array([[np.nan if values.get(n) is None else values[n] for n in names]], dtype=float)
        p_up, p_move = self.predict(X, names)
        return float(p_up[0]), float(p_move[0])

    def payload(self) -> dict:
        up, move = self.up.payload(), self.move.payload()
        return {
            "features": self.features,
            "up": up | {"features": self.up.features},
            "move": move | {"features": self.move.features},
        }

    @classmethod
    def from_payload(cls, payload: dict) -> DirectionForecaster:
        return cls(Component.from_payload(payload["up"]), Component.from_payload(payload["move"]))


@dataclass
class ComponentWalk:
    """Walk-forward of one component over the validation folds."""

    probability: np.ndarray  # out-of-sample: the fold's model, else (too few rows) its base rate
    base: np.ndarray  # the base rate of the rows known before each fold
    outcome: np.ndarray  # bool, on the component's rows of the validation part


def walk_component(
    X: np.ndarray,
    outcome: np.ndarray,
    rows: np.ndarray,
    known_before: list[np.ndarray],
    bounds: np.ndarray,
    name: str = LOGISTIC,
) -> ComponentWalk:
    """Fit candidate name on the rows known before each fold (those in rows), predict the fold's rows."""
    p = np.full(len(outcome), np.nan)
    base = np.full(len(outcome), np.nan)
    for (a, b), known in zip(pairwise(bounds), known_before, strict=True):
        train = known & rows
        base[a:b] = base_rate(outcome[train])
        model = fit_classifier(X[train], outcome[train], name)
        p[a:b] = probability(model, X[a:b]) if model is not None else base[a:b]
    scored = rows.copy()
    scored[: bounds[0]] = False
    scored[bounds[-1] :] = False
    return ComponentWalk(p[scored], base[scored], outcome[scored])


def verdict(walk: ComponentWalk, horizon: int, significance: float) -> dict:
    """The gate of one component on its walk-forward: scores next to the base rate's, and what to serve."""
    from modeling.evaluation import dm_pvalue

    p, ref, y = walk.probability, walk.base, walk.outcome
    if not len(y):
        return {"rows": 0, "source": BASE_RATE, "loses": True, "reason": "no validation windows"}
    loss, ref_loss = log_loss(p, y), log_loss(ref, y)
    out = {
        "rows": len(y),
        "log_loss": float(loss.mean()),
        "log_loss_reference": float(ref_loss.mean()),
        "brier": float(brier(p, y).mean()),
        "brier_reference": float(brier(ref, y).mean()),
        "accuracy": accuracy(p, y),
        "accuracy_reference": accuracy(ref, y),
        "p_value": dm_pvalue(loss, ref_loss, horizon),
        "reliability": reliability(p, y),
    }
    text = (
        f"log loss {out['log_loss']:.5g} vs base rate {out['log_loss_reference']:.5g}, Brier {out['brier']:.5g}"
        f" vs {out['brier_reference']:.5g} (p {out['p_value']:.3g}), significance {significance:g}, {len(y)} windows"
    )
    better = out["log_loss"] < out["log_loss_reference"] and out["brier"] < out["brier_reference"]
    if not better:
        return out | {"source": BASE_RATE, "loses": True, "reason": f"does not beat the base rate: {text}"}
    if not out["p_value"] < significance:
        return out | {"source": BASE_RATE, "loses": False, "reason": f"no significant win over the base rate: {text}"}
    return out | {"source": MODEL, "loses": False, "reason": f"beats the base rate: {text}"}


@dataclass
class DirectionOutcome:
    forecaster: DirectionForecaster  # fitted on every row; each component's source is its gate's verdict
    metrics: dict  # {"up": verdict, "move": verdict, "candidates": {name: verdict}, "base", "features", "model"}


def train_direction(ds, validation_fraction: float, significance: float) -> DirectionOutcome:
    """Walk-forward every candidate over ds's validation part, gate each, fit the served ones on every row.

    ds is a modeling.training.Dataset: y is the target's log return to the horizon.
    The fits run on one thread: a model of this size converges in a few
    iterations, and threads only added overhead (half the time on 2 cores).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _train_direction(ds, validation_fraction, significance)


def select(verdicts: dict[str, dict]) -> str:
    """The candidate whose verdict stands for the run: the lowest walk-forward log loss among those
    that passed their gate, else among all (its verdict then says whether the run is decisive)."""
    scored = {name: v for name, v in verdicts.items() if "log_loss" in v}
    passed = {name: v for name, v in scored.items() if v["source"] == MODEL}
    pool = passed or scored or verdicts
    return min(pool, key=lambda name: pool[name].get("log_loss", np.inf))


def _train_direction(ds, validation_fraction: float, significance: float) -> DirectionOutcome:
    from modeling.evaluation import fold_bounds

    n = len(ds)
    moved, up = ds.y != 0, ds.y > 0
    bounds = fold_bounds(n, FOLDS, validation_fraction)
    index = np.arange(n)
    known_before = [(ds.starts + ds.horizon * ds.interval_s <= ds.starts[a]) & (index < a) for a in bounds[:-1]]

    def columns(features: list[str]) -> np.ndarray:
        return ds.X[:, [ds.names.index(n) for n in features]]

    def gated(name: str, features: list[str], rows: np.ndarray, outcome: np.ndarray) -> dict:
        walk = walk_component(columns(features), outcome, rows, known_before, bounds, name)
        return verdict(walk, ds.horizon, significance) | {"features": features}

    def fitted(name: str, v: dict, rows: np.ndarray, outcome: np.ndarray) -> Component:
        component = Component(base_rate(outcome[rows]), name=name, features=v["features"])
        if v["source"] == MODEL:
            component.model = fit_classifier(columns(v["features"])[rows], outcome[rows], name)
            component.source = MODEL if component.model is not None else BASE_RATE
        return component

    available = {name: f for name in CANDIDATES if (f := candidate_features(name, ds.names)) is not None}
    candidates = {name: gated(name, f, moved, up) for name, f in available.items()}
    best = select(candidates)
    up_component = fitted(best, candidates[best], moved, up)
    move_verdict = gated(LOGISTIC, direction_features(ds.names), np.ones(n, dtype=bool), moved)
    move_component = fitted(LOGISTIC, move_verdict, np.ones(n, dtype=bool), moved)
    metrics: dict = {
        "up": candidates[best] | {"candidate": best},
        "move": move_verdict,
        "candidates": candidates,
        "model": up_component.served,
        "base": {"up": up_component.base, "move": move_component.base, "rows": n},
    }
    forecaster = DirectionForecaster(up_component, move_component)
    metrics["features"] = forecaster.features
    return DirectionOutcome(forecaster, metrics)


def candidate_forecasts(ds) -> dict[str, Component]:
    """Every available candidate of P(up) fitted on every moved row of ds, ungated: the backtest's comparison."""
    moved = ds.y != 0
    out = {}
    for name in CANDIDATES:
        features = candidate_features(name, ds.names)
        if features is None:
            continue
        X = ds.X[:, [ds.names.index(n) for n in features]]
        model = fit_classifier(X[moved], (ds.y > 0)[moved], name)
        out[name] = Component(
            base_rate((ds.y > 0)[moved]), model, MODEL if model is not None else BASE_RATE, name, features
        )
    return out


def served_run(verdicts: list[dict]) -> int | None:
    """Index, among one component's gate verdicts newest first, of the run whose model is served.

    The newest decisive run decides: one whose model beat the base rate
    significantly (served), or one whose model did not beat it at all (None:
    the base rate). Runs in between (better, not significantly) keep what was
    served before them.
    """
    for i, v in enumerate(verdicts):
        if v.get("source") == MODEL:
            return i
        if v.get("loses") is not False:  # a run without a verdict decides for the base rate
            return None
    return None


def carry(previous: DirectionForecaster | None, outcome: DirectionOutcome) -> DirectionForecaster:
    """What to serve after a training run (served_run's rule, run by run): the backtest's bookkeeping."""
    new = outcome.forecaster
    if previous is None:
        return new
    kept = {}
    for name in ("up", "move"):
        v, old, fresh = outcome.metrics[name], getattr(previous, name), getattr(new, name)
        decisive = v["source"] == MODEL or v.get("loses") is not False
        kept[name] = fresh if decisive or old.source != MODEL else old
    return DirectionForecaster(kept["up"], kept["move"])
