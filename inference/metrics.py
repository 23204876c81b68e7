"""Rolling live metrics of served predictions, always next to persistence.

One implementation for the API, the admin and the web pages, per horizon: the newest
LIVE_METRICS_WINDOW scored predictions of each served forecaster (each model;
persistence-served predictions form their own group, model None) and of the
market as a whole, of the market's current target (the mid where it has a
book, else the close). Each group says what it covers: how many windows, and
the made_at of its oldest and newest prediction (since / until).

The 80 % interval coverage counts only predictions that had an interval: a
zero-width band (lower == upper, persistence before any training run has
calibrated one) is no interval. interval_rows says how many had one; with none,
coverage_80 is null.

Next to the price errors, the direction calls: accuracy of the served P(up)
(> 0.5 calls up) on the windows whose target moved, with its Brier score and
log loss, each next to the base rate of the same training run on the same windows,
and the accuracy of the microprice rule where the book is known.

And what those calls are worth (value.timing, modeling.value.timing): on the
scored windows with the book known at made_at and target_time, what waiting
to buy or sell on the served P(up) saves per decision, in basis points of the
mid, next to the microprice rule, always waiting and perfect foresight.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet

from core import horizons
from features.engine import market_target
from inference.models import Prediction
from markets.models import Market
from modeling.evaluation import direction_metrics, evaluate
from modeling.models import ModelArtifact
from modeling.value import Quotes, book_quotes, rule_p_up, timing

PRICE_COLUMNS = ("price", "lower", "upper", "base_close", "realized")
COLUMNS = (*PRICE_COLUMNS, "p_up", "p_up_base")


def _iso(value) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def error_metrics(rows: list[tuple], made_at: list | None = None) -> dict:
    """Metrics of (price, lower, upper, base_close, realized, p_up, p_up_base) rows: model, persistence, direction.

    The same evaluation as training's validation (modeling.evaluation.evaluate), so live
    and validation figures compare; coverage counts only rows with an interval (lower <
    upper). Persistence predicts no move and has no interval: its directional accuracy
    is 0.5 by that convention and its coverage is null. made_at (the rows' times) gives
    since and until. direction: the served P(up) on the moved windows that have one,
    next to the base rate.
    """
    if not rows:
        return {
            "count": 0,
            "since": None,
            "until": None,
            "interval_rows": 0,
            "model": None,
            "persistence": None,
            "direction": None,
        }
    price, lower, upper, base, realized, p_up, p_up_base = np.array(rows, dtype=float).T
    persistence = evaluate(base, realized, base, base, base)
    persistence["coverage_80"] = None
    model = evaluate(base, realized, price, lower, upper)
    banded = lower < upper
    model["coverage_80"] = (
        float(np.mean((lower[banded] <= realized[banded]) & (realized[banded] <= upper[banded])))
        if banded.any()
        else None
    )
    d = direction_metrics(base, realized, p_up, p_up_base)
    direction = {
        "moved_rows": d["moved_rows"],
        "accuracy": d["accuracy"],
        "base_rate_accuracy": d["accuracy_reference"],
        "brier": d["brier"],
        "brier_reference": d["brier_reference"],
        "log_loss": d["log_loss"],
        "log_loss_reference": d["log_loss_reference"],
    }
    return {
        "count": len(rows),
        "since": _iso(min(made_at)) if made_at else None,
        "until": _iso(max(made_at)) if made_at else None,
        "interval_rows": int(banded.sum()),
        "model": model,
        "persistence": persistence,
        "direction": direction,
    }


def group_metrics(
    market: Market, interval_s: int, horizon: int, rows: list[tuple], quotes: Quotes | None = None
) -> dict:
    """error_metrics of (made_at, *COLUMNS) rows, with their value (None without rows, like direction).

    With a book, direction also carries rule_accuracy: the microprice rule's calls (up exactly when
    microprice > mid at made_at) scored like the served P(up), on its moved windows with a known book.
    quotes: the book at the rows' made_at, if already read (else it is read here).
    """
    values, made_at = _split(rows)
    out = error_metrics(values, made_at)
    if not rows:
        return out | {"value": None}
    table = np.array(values, dtype=float)
    base, realized, p_up = (table[:, COLUMNS.index(name)] for name in ("base_close", "realized", "p_up"))
    if quotes is None:
        quotes = book_quotes(market, interval_s, made_at, horizon)
    rule = np.where(np.isfinite(p_up), rule_p_up(quotes), np.nan)
    out["direction"]["rule_accuracy"] = direction_metrics(base, realized, rule, None)["accuracy"]
    return out | {"value": {"timing": timing(p_up, quotes)}}


def _split(rows: list[tuple]) -> tuple[list[tuple], list]:
    """(made_at, *COLUMNS) rows -> COLUMNS rows and their made_at."""
    return [row[1:] for row in rows], [row[0] for row in rows]


def _scored(market: Market, horizon: int, target: str) -> QuerySet:
    return Prediction.objects.filter(
        market=market, interval_s=market.interval_s, horizon=horizon, target=target, realized__isnull=False
    )


def _served_models(market: Market, horizon: int, scored: QuerySet) -> list[int | None]:
    """Ids of the models with scored predictions at the horizon, and None (persistence, or a deleted model).

    The market's artifacts at the horizon, each probed in scored (the market's scored predictions there)
    with one index lookup: no scan of the predictions.
    """
    artifacts = ModelArtifact.objects.filter(market=market, interval_s=market.interval_s, horizon=horizon)
    served = artifacts.filter(Exists(scored.filter(model_id=OuterRef("pk"))))
    return [None, *served.order_by("pk").values_list("pk", flat=True)]


def live_metrics(market: Market, horizon: int | None = None) -> dict:
    """The market's live metrics at a horizon (default: the shortest): all served predictions, then per model.

    One indexed query per model for its newest window; the market's window is the newest of their
    union (each of its rows is among the newest of its own model's), and the book is read once for all.
    """
    window = settings.LIVE_METRICS_WINDOW
    horizon = horizon or horizons.shortest()
    target = market_target(market)
    scored = _scored(market, horizon, target)
    groups: dict = {}
    columns = ("model_version", "algorithm", "made_at", *COLUMNS)
    for model_id in _served_models(market, horizon, scored):
        newest = scored.filter(model_id=model_id).order_by("-made_at").values_list(*columns)[:window]
        for version, algorithm, *values in newest:
            groups.setdefault((model_id, version, algorithm), []).append(tuple(values))
    for rows in groups.values():
        rows.reverse()  # oldest first, the order the metrics have always summed them in
    overall = sorted((row for rows in groups.values() for row in rows), key=lambda row: row[0], reverse=True)[:window]
    made_at = sorted({row[0] for rows in groups.values() for row in rows})
    quotes = book_quotes(market, market.interval_s, made_at, horizon)
    position = {t: i for i, t in enumerate(made_at)}

    def metrics(rows: list[tuple]) -> dict:
        at = np.array([position[row[0]] for row in rows], dtype=int)
        return group_metrics(market, market.interval_s, horizon, rows, quotes.subset(at))

    return {
        "market": market.name,
        "interval_s": market.interval_s,
        "horizon": horizon,
        "target": target,
        "window": window,
        "served": metrics(overall),
        "models": [
            {"served_by": {"id": model_id, "version": version, "algorithm": algorithm}, **metrics(rows)}
            for (model_id, version, algorithm), rows in sorted(groups.items(), key=lambda item: item[0][0] or 0)
        ],
    }


def model_live_metrics(artifact: ModelArtifact) -> dict:
    """Live metrics of one model's newest scored predictions."""
    scored = Prediction.objects.filter(model=artifact, realized__isnull=False).order_by("-made_at")
    rows = list(scored.values_list("made_at", *COLUMNS)[: settings.LIVE_METRICS_WINDOW])
    return group_metrics(artifact.market, artifact.interval_s, artifact.horizon, rows)
