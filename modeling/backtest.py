"""Walk-forward backtest over stored candles, run the way production runs.

At each retrain point: train on the preceding window only (rows whose target
was known by then), apply the same promotion gate against the model being
served, then predict every window until the next retrain point with what
production would serve: the new model if promoted, else the active one, else
persistence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from features.engine import compute_features
from features.frame import datetime_from_epoch
from markets.models import Market
from modeling.direction import DirectionForecaster, candidate_forecasts, carry
from modeling.evaluation import direction_metrics, evaluate, sign_test
from modeling.forecast import Forecaster
from modeling.training import Dataset, TrainingError, build_dataset, persistence_forecaster, train
from modeling.value import Quotes, book_quotes, choose_threshold, taker, timing


@dataclass
class BacktestConfig:
    interval_s: int
    horizon: int
    train_window_s: int
    retrain_every_s: int
    margin: float
    significance: float
    folds: int
    validation_fraction: float
    min_rows: int
    target: str = "close"
    fee_bps: float = 0.0  # per side, for the taker value


@dataclass
class Backtest:
    market: Market
    config: BacktestConfig
    ds: Dataset  # predicted rows
    price: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    persistence: tuple[np.ndarray, np.ndarray, np.ndarray]
    algorithm: np.ndarray  # served algorithm per row
    version: np.ndarray  # served model version per row (0 = persistence)
    retrains: list[dict] = field(default_factory=list)
    p_up: np.ndarray | None = None  # served P(up | move) per row
    p_up_base: np.ndarray | None = None  # the base rate of the same training run
    p_move: np.ndarray | None = None
    p_move_base: np.ndarray | None = None
    direction_source: np.ndarray | None = None  # "model" | "base rate" per row
    quotes: Quotes | None = None  # top of book at each row's t and t + h (None: no book stored)
    taker_choice: dict | None = None  # the taker threshold and the training rows it was chosen on
    direction_model: np.ndarray | None = None  # the candidate serving P(up) per row, or "base rate"
    candidates: dict[str, np.ndarray] = field(default_factory=dict)  # each candidate's own P(up) per row, ungated

    def summary(self) -> dict:
        c, actual = self.ds.close, self.ds.actual
        by_algorithm = {}
        for name in sorted(set(self.algorithm)):
            m = self.algorithm == name
            by_algorithm[name] = evaluate(c[m], actual[m], self.price[m], self.lower[m], self.upper[m])
            # The reference on the same windows: did serving this algorithm help where it was served?
            reference = evaluate(c[m], actual[m], *(p[m] for p in self.persistence))
            by_algorithm[name]["persistence_rmse"] = reference["rmse"]
        return {
            "market": self.market.name,
            "interval_s": self.config.interval_s,
            "horizon": self.config.horizon,
            "rows": len(self.ds),
            "start": iso(self.ds.starts[0]),
            "end": iso(self.ds.starts[-1]),
            "served": evaluate(c, actual, self.price, self.lower, self.upper),
            "persistence": evaluate(c, actual, *self.persistence),
            "by_algorithm": by_algorithm,
            "target": self.ds.target,
            "direction": self.direction_summary(),
            "value": self.value_summary(),
            "retrains": self.retrains,
        }

    def direction_summary(self) -> dict:
        """The served direction calls against the base rate on the windows whose target moved.

        Next to them, two baselines on the same windows: the base rate's own
        call, and (with book features) the sign of microprice - mid alone.
        """
        c, actual = self.ds.close, self.ds.actual
        out = direction_metrics(c, actual, self.p_up, self.p_up_base)
        out["base_rate_accuracy"] = out.pop("accuracy_reference")
        micro = self.ds.column("micro_dev")
        if micro is not None:
            out["microprice_accuracy"] = direction_metrics(c, actual, 0.5 + np.sign(micro) / 4, None)["accuracy"]
        move = direction_metrics(c, actual, self.p_move, self.p_move_base, event="move")
        out["move"] = {k: move[k] for k in ("brier", "brier_reference", "log_loss", "log_loss_reference", "rows")}
        sources = self.direction_source[np.isfinite(self.p_up)]
        out["served_by"] = {name: int((sources == name).sum()) for name in sorted(set(sources))}
        models = self.direction_model[np.isfinite(self.p_up)]
        out["served_model_by"] = {name: int((models == name).sum()) for name in sorted(set(models))}
        return out | self.candidates_summary()

    def candidates_summary(self) -> dict:
        """Each candidate's own P(up), the served one, the microprice rule and the base rate on the same windows.

        The windows: those whose target moved where every forecast has a
        probability. The rule is sign(microprice - mid) as the probability
        1/2 + sign / 4. served_vs_rule_pvalue is a two-sided exact sign test
        (McNemar) on the paired per-window correctness of the served call and
        the rule's (modeling.evaluation.sign_test); None without book features.
        """
        c, actual = self.ds.close, self.ds.actual
        forecasts = dict(self.candidates) | {"served": self.p_up, "base rate": self.p_up_base}
        micro = self.ds.column("micro_dev")
        if micro is not None:
            forecasts[RULE] = 0.5 + np.sign(micro) / 4
        rows = actual != c
        for p in forecasts.values():
            rows &= np.isfinite(p)
        scores = {name: direction_metrics(c[rows], actual[rows], p[rows], None) for name, p in forecasts.items()}
        out = {name: {k: m[k] for k in ("accuracy", "brier", "log_loss")} for name, m in scores.items()}
        pvalue = None
        if micro is not None:
            up = actual[rows] > c[rows]
            served, rule = (np.where(p == 0.5, 0.5, (p > 0.5) == up) for p in (self.p_up[rows], forecasts[RULE][rows]))
            pvalue = sign_test(served, rule)
        return {"candidates": out, "candidates_rows": int(rows.sum()), "served_vs_rule_pvalue": pvalue}

    def value_summary(self) -> dict | None:
        """What the served P(up) is worth on the predicted rows (modeling.value); None without a book."""
        if self.quotes is None or self.taker_choice is None:
            return None
        threshold = self.taker_choice["threshold"]
        return {
            "timing": timing(self.p_up, self.quotes),
            "taker": taker(self.p_up, self.quotes, threshold, self.config.fee_bps) | {"chosen_on": self.taker_choice},
        }

    def write_csv(self, path: Path) -> None:
        step = self.config.interval_s
        with open(path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(CSV_HEADER)
            for i, start in enumerate(self.ds.starts):
                made = int(start) + step
                out.writerow(
                    [
                        iso(made),
                        iso(made + self.config.horizon * step),
                        repr(float(self.ds.close[i])),
                        repr(float(self.price[i])),
                        repr(float(self.lower[i])),
                        repr(float(self.upper[i])),
                        repr(float(self.ds.actual[i])),
                        self.algorithm[i],
                        int(self.version[i]),
                        self.ds.target,
                        _num(self.p_up[i]),
                        _num(self.p_move[i]),
                        self.direction_source[i],
                    ]
                )


RULE = "microprice rule"

CSV_HEADER = [
    "made_at",
    "target_time",
    "close",
    "price",
    "lower",
    "upper",
    "realized",
    "algorithm",
    "version",
    "target",
    "p_up",
    "p_move",
    "direction_source",
]


def _num(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))


def iso(epoch: int) -> str:
    return datetime_from_epoch(int(epoch)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_backtest(market: Market, config: BacktestConfig, start: datetime, end: datetime) -> Backtest:
    """Predict every window from start to end as production would have, training on data before each retrain.

    start is the first predicted window (the convention of backtesting tools: the
    time range is what is evaluated); the first model trains on the train window before it.
    """
    iv, h = config.interval_s, config.horizon
    data_start = start - timedelta(seconds=config.train_window_s)
    full = build_dataset(compute_features(market, iv, data_start, end), h, target=config.target)
    first_retrain = int(start.timestamp())
    if not len(full) or full.starts[-1] < first_retrain or full.starts[0] >= first_retrain:
        raise TrainingError(
            f"{market}: a backtest from {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ} needs usable"
            f" {iv}s windows in the --train-window ({config.train_window_s}s) before --start and after it"
        )
    served: Forecaster | None = None
    version = 0
    persistence: Forecaster | None = None
    direction: DirectionForecaster | None = None  # what is served (a model kept from an earlier run, or not)
    reference: DirectionForecaster | None = None  # the newest run's base rates
    predicted = np.zeros(len(full), dtype=bool)
    bands = np.full((6, len(full)), np.nan)  # served price/lower/upper, persistence price/lower/upper
    probabilities = np.full((4, len(full)), np.nan)  # p_up, its base rate, p_move, its base rate
    sources = np.full(len(full), "", dtype=object)
    models = np.full(len(full), "", dtype=object)
    candidates: dict[str, np.ndarray] = {}
    fits: dict = {}  # each candidate fitted by the newest run
    algorithm = np.full(len(full), "", dtype=object)
    versions = np.zeros(len(full), dtype=int)
    retrains: list[dict] = []
    quotes = _quotes(market, full)
    taker_choice: dict | None = None
    for p in range(first_retrain, int(full.starts[-1]) + 1, config.retrain_every_s):
        known = (full.starts >= p - config.train_window_s) & (full.starts + (h + 1) * iv <= p)
        train_ds = full.subset(known)
        event = {"at": iso(p), "rows": len(train_ds)}
        if len(train_ds) >= config.min_rows:
            outcome = train(
                train_ds, served, config.margin, config.significance, config.folds, config.validation_fraction
            )
            persistence = persistence_forecaster(train_ds)
            direction, reference = carry(direction, outcome.direction), outcome.direction.forecaster
            fits = candidate_forecasts(train_ds)
            event["direction"] = f"{direction.model_name} served; {outcome.direction.metrics['up']['reason']}"
            if taker_choice is None and quotes is not None:
                taker_choice = choose_taker_threshold(direction, train_ds, quotes.subset(known), config.fee_bps)
            if outcome.promote:
                served, version = outcome.forecaster, version + 1
            elif outcome.retire_active:
                served = None
            event |= {"promoted": outcome.promote, "reason": outcome.reason, "retired": outcome.retire_active}
        else:
            event |= {"promoted": False, "reason": f"too little data ({len(train_ds)} < {config.min_rows} rows)"}
        retrains.append(event)
        rows = (full.starts >= p) & (full.starts < p + config.retrain_every_s)
        if persistence is None or not rows.any():
            continue
        model = served or persistence
        close, X = full.close[rows], full.X[rows]
        bands[:3, rows] = model.predict_prices(close, X)
        bands[3:, rows] = persistence.predict_prices(close, X)
        algorithm[rows], versions[rows], predicted[rows] = model.algorithm, version if served else 0, True
        if direction is not None:
            probabilities[0, rows], probabilities[2, rows] = direction.predict(X, full.names)
            probabilities[1, rows], probabilities[3, rows] = reference.up.base, reference.move.base
            sources[rows], models[rows] = direction.source, direction.model_name
            for name, component in fits.items():
                candidates.setdefault(name, np.full(len(full), np.nan))[rows] = component.predict(X, full.names)
    if not predicted.any():
        raise TrainingError(f"{market}: no window could be predicted (every training window had too little data)")
    b, d = bands[:, predicted], probabilities[:, predicted]
    return Backtest(
        market,
        config,
        full.subset(predicted),
        b[0],
        b[1],
        b[2],
        (b[3], b[4], b[5]),
        algorithm[predicted],
        versions[predicted],
        retrains,
        d[0],
        d[1],
        d[2],
        d[3],
        sources[predicted],
        quotes.subset(predicted) if quotes is not None else None,
        taker_choice,
        models[predicted],
        {name: p[predicted] for name, p in candidates.items()},
    )


def _quotes(market: Market, ds: Dataset) -> Quotes | None:
    """The book at every row's window end and horizon windows later; None when the market has no book there."""
    made_at = [datetime_from_epoch(int(s) + ds.interval_s) for s in ds.starts]
    quotes = book_quotes(market, ds.interval_s, made_at, ds.horizon)
    return quotes if np.isfinite(quotes.mid).any() else None


def choose_taker_threshold(direction: DirectionForecaster, train_ds: Dataset, quotes: Quotes, fee_bps: float) -> dict:
    """The taker threshold, chosen once for the whole backtest before any evaluated row.

    At the first retrain point (--start) that trains a direction forecaster, the
    forecaster served from there on predicts P(up) on that run's training rows
    (the --train-window before --start whose target was known at --start: in
    sample, the rows it was fitted on), and modeling.value.choose_threshold
    picks the threshold with the best total net P&L there. No evaluated row
    takes part in the choice.
    """
    p_up, _ = direction.predict(train_ds.X, train_ds.names)
    threshold = choose_threshold(p_up, quotes, fee_bps)
    return {
        "threshold": threshold,
        "start": iso(train_ds.starts[0]),
        "end": iso(train_ds.starts[-1]),
        "rows": len(train_ds),
        "pnl_bps_total": taker(p_up, quotes, threshold, fee_bps)["pnl_bps_total"],
    }
