"""Challengers: every candidate the gate did not promote is scored live, in shadow, for CHALLENGER_HOURS.

At each pipeline step, right after the served predictions, shadow() has each
current challenger (rejected by the gate less than CHALLENGER_HOURS ago; the
newest CHALLENGER_MAX of the market) predict the same fresh windows the served
forecaster just predicted, and only windows after its training data. The
predictions go to their own table (ShadowPrediction): never served, cached or
published. Each predicts its own target (the close, or the book's mid), from
that price at the window end, and is scored as the served predictions are: by
the final candle's close or the book window's mid at the target time. A
challenger that fails is logged and counted; serving never notices.

compare() puts a challenger next to what was served on the same windows (the
champion: the active model, or persistence) and persistence, with the gate's
Diebold-Mariano test (modeling.training.dm_pvalue) on those live windows; the
admin shows it and can promote the challenger through modeling.registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

import numpy as np
from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone
from threadpoolctl import ThreadpoolController

from core import prometheus
from core.bulk import set_realized, upsert
from inference.metrics import PRICE_COLUMNS, error_metrics
from inference.models import Prediction
from markets.models import BookWindow, Candle, Market
from modeling.evaluation import evaluate
from modeling.forecast import PRICE_QUANTUM
from modeling.models import ModelArtifact
from monitoring.models import ShadowPrediction

log = logging.getLogger(__name__)
Status = ModelArtifact.Status

# Per process: artifact id -> (forecaster, train_end, feature_version), or None when it cannot be loaded.
_loaded: dict[int, tuple | None] = {}


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def current(market: Market, interval_s: int, horizon: int, now: datetime | None = None) -> list[ModelArtifact]:
    """The market's challengers in shadow now at the horizon: rejected by the gate within CHALLENGER_HOURS,
    newest first."""
    return current_by_horizon(market, interval_s, (horizon,), now)[horizon]


def current_by_horizon(
    market: Market, interval_s: int, horizons: Iterable[int], now: datetime | None = None
) -> dict[int, list[ModelArtifact]]:
    """current() at each of the horizons, in one query."""
    found: dict[int, list[ModelArtifact]] = {h: [] for h in horizons}
    hours, most = settings.CHALLENGER_HOURS, settings.CHALLENGER_MAX
    if hours <= 0 or most <= 0:
        return found
    since = (now or timezone.now()) - timedelta(hours=hours)
    rejected = ModelArtifact.objects.filter(
        market=market, interval_s=interval_s, horizon__in=found, status=Status.REJECTED, created_at__gte=since
    )
    for artifact in rejected.defer("artifact", "metrics").order_by("-created_at"):
        if len(found[artifact.horizon]) < most:
            found[artifact.horizon].append(artifact)
    return found


def _forecaster(artifact: ModelArtifact):
    if artifact.pk not in _loaded:
        from modeling import registry, serialization  # scikit-learn and skops come with the first model

        try:
            full = ModelArtifact.objects.get(pk=artifact.pk)
            _loaded[artifact.pk] = registry.load_forecaster(full)
        except (serialization.ArtifactError, ModelArtifact.DoesNotExist) as exc:
            log.warning("challenger %s not loaded: %s", artifact.pk, exc)
            _loaded[artifact.pk] = None
    return _loaded[artifact.pk]


def shadow(market: Market, pending: dict[int, list]) -> int:
    """Shadow predictions of each horizon's current challengers for the feature rows just predicted at it
    (horizon -> rows, all of one interval); returns how many.

    Never raises: a challenger is not allowed to disturb serving.
    """
    if not any(pending.values()) or settings.CHALLENGER_HOURS <= 0:
        return 0
    try:
        return _shadow(market, pending)
    except Exception:
        log.exception("%s: shadow predictions failed", market)
        prometheus.SHADOW_FAILURES.labels(market.name).inc()
        return 0


def _shadow(market: Market, pending: dict[int, list]) -> int:
    interval_s = next(rows[0].interval_s for rows in pending.values() if rows)
    by_horizon = current_by_horizon(market, interval_s, [h for h, rows in pending.items() if rows])
    challengers = [artifact for artifacts in by_horizon.values() for artifact in artifacts]
    if not challengers:
        return 0
    made: list[ShadowPrediction] = []
    for artifact in challengers:
        fresh = [
            r
            for r in pending[artifact.horizon]
            if r.start > artifact.train_end
            and r.version == artifact.feature_version
            and _base(r, artifact.target) is not None
        ]
        if not fresh:
            continue
        forecaster = _forecaster(artifact)
        if forecaster is None:
            continue
        try:
            made.extend(_predict(forecaster, artifact, market, fresh, artifact.horizon))
        except Exception:
            log.exception("%s: challenger %s failed", market, artifact)
            prometheus.SHADOW_FAILURES.labels(market.name).inc()
    upsert(ShadowPrediction, made, ["artifact", "made_at"])
    prometheus.count(prometheus.SHADOW_PREDICTIONS, market.name, len(made))
    score(market, interval_s, [a.pk for a in challengers])
    return len(made)


def _base(row, target: str):
    """The target's price at the row's window end, as served predictions start from it (None: no book there)."""
    return getattr(row, "mid", None) if target == "mid" else row.close


def _predict(forecaster, artifact: ModelArtifact, market: Market, rows: list, horizon: int) -> list[ShadowPrediction]:
    """The challenger's predictions of rows, all in one call (a replay's batch is thousands of rows)."""
    started = time.perf_counter()
    close = np.array([float(_base(row, artifact.target)) for row in rows])
    X = np.vstack([forecaster.vector(row.values) for row in rows])
    with _threadpools().limit(limits=1, user_api="openmp"):  # as served predictions: no OpenMP stalls
        bands = forecaster.predict_prices(close, X)
    latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
    made = []
    for i, row in enumerate(rows):
        price, lower, upper = (Decimal(repr(float(v[i]))).quantize(PRICE_QUANTUM) for v in bands)
        made_at = row.start + timedelta(seconds=row.interval_s)
        made.append(
            ShadowPrediction(
                artifact_id=artifact.pk,
                market=market,
                interval_s=row.interval_s,
                horizon=horizon,
                made_at=made_at,
                target_time=made_at + timedelta(seconds=row.interval_s * horizon),
                target=artifact.target,
                base_close=Decimal(_base(row, artifact.target)),
                price=price,
                lower=lower,
                upper=upper,
                latency_ms=latency_ms,
            )
        )
    return made


def score(market: Market, interval_s: int, artifact_ids: list[int]) -> int:
    """Store the realized price in the unscored shadow predictions of these challengers whose target is known:
    the final candle's close, or the book window's mid (as inference.predictions.score does for served ones)."""
    pending = ShadowPrediction.objects.filter(artifact_id__in=artifact_ids, interval_s=interval_s, realized=None)
    span = pending.aggregate(first=Min("target_time"), last=Max("target_time"))
    if span["first"] is None:
        return 0
    period = timedelta(seconds=interval_s)
    windows = (span["first"] - period, span["last"] - period)
    prices = {
        "close": dict(
            Candle.objects.filter(market=market, interval_s=interval_s, final=True, start__range=windows).values_list(
                "start", "close"
            )
        ),
        "mid": dict(
            BookWindow.objects.filter(market=market, interval_s=interval_s, start__range=windows).values_list(
                "start", "mid"
            )
        ),
    }
    due = [
        (pk, prices[kind][target - period])
        for pk, target, kind in pending.values_list("pk", "target_time", "target")
        if target - period in prices.get(kind, {})
    ]
    if not due:
        return 0
    ids, realized = zip(*due, strict=True)
    return set_realized(ShadowPrediction, ids, realized)


def live_metrics(artifact: ModelArtifact) -> dict:
    """The challenger's newest LIVE_METRICS_WINDOW scored shadow predictions, next to persistence (as served ones)."""
    scored = ShadowPrediction.objects.filter(artifact=artifact, realized__isnull=False).order_by("-made_at")
    rows = list(scored.values_list("made_at", *PRICE_COLUMNS)[: settings.LIVE_METRICS_WINDOW])
    # A challenger forecasts prices only: no P(up) of its own (its direction columns stay empty).
    return error_metrics([(*row[1:], None, None) for row in rows], [row[0] for row in rows])


def compare(artifact: ModelArtifact) -> dict:
    """The challenger next to the champion (what was served) and persistence on the same scored windows.

    The newest LIVE_METRICS_WINDOW windows the challenger predicted whose served
    prediction is scored; the realized close is the served prediction's (rescored
    after late trades). p_vs_champion / p_vs_persistence: the gate's one-sided
    Diebold-Mariano p-value of "the challenger's squared error is not lower".
    """
    shadow = {
        made_at: bands
        for made_at, *bands in ShadowPrediction.objects.filter(artifact=artifact)
        .order_by("-made_at")
        .values_list("made_at", "price", "lower", "upper")[: settings.LIVE_METRICS_WINDOW * 2]
    }
    served = list(
        Prediction.objects.filter(
            market_id=artifact.market_id,
            interval_s=artifact.interval_s,
            horizon=artifact.horizon,
            made_at__in=list(shadow),
            target=artifact.target,  # the same price predicted: a close and a mid do not compare
            realized__isnull=False,
        )
        .order_by("-made_at")
        .values_list("made_at", "price", "lower", "upper", "base_close", "realized", "algorithm", "model_version")[
            : settings.LIVE_METRICS_WINDOW
        ]
    )
    result = {"windows": len(served), "since": None, "until": None, "champion_served_by": []}
    if not served:
        return result | {"challenger": None, "champion": None, "persistence": None, "p_vs_champion": None}
    served.reverse()
    made_at = [row[0] for row in served]
    champion_price, lower, upper, base, actual = (
        np.array([row[i] for row in served], dtype=float) for i in range(1, 6)
    )
    challenger, c_lower, c_upper = np.array([shadow[m] for m in made_at], dtype=float).T
    result["since"], result["until"] = made_at[0], made_at[-1]
    result["champion_served_by"] = sorted({f"{row[6]} v{row[7]}" if row[7] else row[6] for row in served})
    result["challenger"] = evaluate(base, actual, challenger, c_lower, c_upper)
    result["champion"] = evaluate(base, actual, champion_price, lower, upper)
    result["persistence"] = evaluate(base, actual, base, base, base) | {"coverage_80": None}
    from modeling.evaluation import dm_pvalue  # the gate's test

    loss = (challenger - actual) ** 2
    result["p_vs_champion"] = dm_pvalue(loss, (champion_price - actual) ** 2, artifact.horizon)
    result["p_vs_persistence"] = dm_pvalue(loss, (base - actual) ** 2, artifact.horizon)
    return result
