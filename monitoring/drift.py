"""Drift of a market at each horizon: its features against the served model's training window, and its live errors.

Feature drift: the population stability index (PSI) of each feature over the
newest DRIFT_WINDOW feature rows against the rows of the reference model's
training window (train_start..train_end; the active model, else the newest
trained one), with ten bins at the reference's deciles:
PSI = sum over bins (recent share - reference share) * ln(recent share / reference share).
A feature whose PSI exceeds DRIFT_PSI_THRESHOLD (0.25, the customary "major
shift") has drifted; the market's features have drifted when at least
DRIFT_FEATURE_SHARE (a quarter) of them have. One feature alone moves with the
market's own regimes: on the bundled Gemini day, the evening's volatility and
order-flow features (3 of 23) differ from the morning's by a PSI of 0.27 to 0.46,
and the newest 1,000 windows are less than three hours; a market that changes
character moves most of them at once (17 of 23 when that day is followed by
Binance's ETH/USDT trades). Every feature's PSI is exported, to alert on one.
The time-of-day features are left out: they are the clock, and a recent window
covers only part of the day by construction.

Error drift: ADWIN (river) over the squared errors, in basis points of the
price, of the newest DRIFT_ERROR_WINDOW scored predictions that were served, in
time order, each fed as log(1 + e²): the log keeps one crash print from counting
as a new level. ADWIN finds a change of the mean level with confidence
DRIFT_ADWIN_DELTA; it counts as drift when the mean squared error since the
change differs from the one before it by at least a factor DRIFT_ERROR_RATIO
(2, either way). Real error levels do move within a day with volatility (by
1.5 to 1.8 times on the bundled Gemini day, which ADWIN finds significant); the ratio
keeps those from being reported as drift.

check() stores a DriftReport per horizon (admin, models page, /metrics); with
DRIFT_RETRAIN on, drift queues an early retraining of the market (at most once
per DRIFT_RETRAIN_COOLDOWN), recorded as a model event.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.utils import timezone

from features import definitions
from features.models import FeatureRow
from inference.models import Prediction
from markets.models import Market
from modeling.models import ModelArtifact, ModelEvent
from monitoring.models import DriftReport

log = logging.getLogger(__name__)
BINS = 10
MIN_ROWS = 50  # fewer rows on either side: no PSI for that feature
CLOCK_PREFIXES = ("tod_",)  # time of day: the clock, not the market
SMOOTHING = 0.5  # added to each bin's count, so an empty bin has a finite log


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = BINS) -> float | None:
    """Population stability index of recent against reference (NaN rows left out); None with too few rows."""
    reference = reference[np.isfinite(reference)]
    recent = recent[np.isfinite(recent)]
    if len(reference) < MIN_ROWS or len(recent) < MIN_ROWS:
        return None
    # Bin upper bounds at the reference's inner quantiles; a point mass (many zero returns) merges bins.
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    n_bins = len(edges) + 1
    expected = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=n_bins) + SMOOTHING
    actual = np.bincount(np.searchsorted(edges, recent, side="left"), minlength=n_bins) + SMOOTHING
    expected, actual = expected / expected.sum(), actual / actual.sum()
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[np.nan if r.get(n) is None else r[n] for n in names] for r in rows], dtype=float).reshape(
        len(rows), len(names)
    )


def reference_model(market: Market, interval_s: int, horizon: int) -> ModelArtifact | None:
    models = ModelArtifact.objects.filter(
        market=market, interval_s=interval_s, horizon=horizon, feature_version=definitions.VERSION
    ).defer("artifact", "metrics")
    return models.filter(status=ModelArtifact.Status.ACTIVE).first() or models.order_by("-created_at").first()


def feature_drift(market: Market, reference: ModelArtifact, window: int) -> dict:
    """{"psi": {feature: psi}, "reference_rows", "recent_rows", "recent_start", "recent_end"}."""
    rows = FeatureRow.objects.filter(market=market, interval_s=reference.interval_s, version=definitions.VERSION)
    recent = list(rows.order_by("-start").values_list("start", "values")[:window])
    base = list(rows.filter(start__range=(reference.train_start, reference.train_end)).values_list("values", flat=True))
    result = {"psi": {}, "reference_rows": len(base), "recent_rows": len(recent), "recent_start": None}
    result["recent_end"] = None
    if not recent or not base:
        return result
    result["recent_start"], result["recent_end"] = recent[-1][0], recent[0][0]
    names = sorted(n for n in base[0] if not n.startswith(CLOCK_PREFIXES))
    expected, actual = feature_matrix(base, names), feature_matrix([v for _, v in recent], names)
    for i, name in enumerate(names):
        value = psi(expected[:, i], actual[:, i])
        if value is not None:
            result["psi"][name] = round(value, 6)
    return result


def squared_errors_bp(market: Market, interval_s: int, horizon: int, window: int) -> tuple[list, np.ndarray]:
    """(made_at, squared error in bp²) of the newest scored served predictions, oldest first."""
    rows = list(
        Prediction.objects.filter(market=market, interval_s=interval_s, horizon=horizon, realized__isnull=False)
        .order_by("-made_at")
        .values_list("made_at", "price", "base_close", "realized")[:window]
    )
    rows.reverse()
    if not rows:
        return [], np.array([])
    made_at = [row[0] for row in rows]
    price, base, realized = np.array([row[1:] for row in rows], dtype=float).T
    return made_at, ((price - realized) / base * 1e4) ** 2


def error_drift(errors: np.ndarray, delta: float, ratio: float) -> dict:
    """ADWIN over log(1 + squared error) of the stream, oldest first.

    {"detected": a change of at least ratio, "at": index of ADWIN's last detection (or None), "before" and
    "after": mean squared error before and since the window ADWIN kept, "detections": how many it made}.
    """
    from river.drift import ADWIN

    adwin = ADWIN(delta=delta)
    detections = []
    for i, value in enumerate(np.log1p(errors)):
        adwin.update(float(value))
        if adwin.drift_detected:
            detections.append(i)
    if not detections:
        return {"detected": False, "at": None, "before": None, "after": None, "detections": 0}
    split = max(1, len(errors) - int(adwin.width))  # ADWIN keeps the errors since the change
    before, after = float(errors[:split].mean()), float(errors[split:].mean())
    changed = before > 0 and after > 0 and max(after / before, before / after) >= ratio
    return {"detected": changed, "at": detections[-1], "before": before, "after": after, "detections": len(detections)}


def check(market: Market, horizon: int) -> DriftReport:
    """Compute and store the market's drift report at a horizon (and queue an early retraining when asked to)."""
    interval_s = market.interval_s
    reference = reference_model(market, interval_s, horizon)
    report = DriftReport(market=market, horizon=horizon, reference=reference)
    details = []
    if reference is not None:
        features = feature_drift(market, reference, settings.DRIFT_WINDOW)
        report.psi = features["psi"]
        report.reference_rows, report.recent_rows = features["reference_rows"], features["recent_rows"]
        report.recent_start, report.recent_end = features["recent_start"], features["recent_end"]
        if report.psi:
            report.max_psi_feature, report.max_psi = max(report.psi.items(), key=lambda item: item[1])
            drifted = sorted((v, k) for k, v in report.psi.items() if v > settings.DRIFT_PSI_THRESHOLD)
            report.feature_drift = len(drifted) >= settings.DRIFT_FEATURE_SHARE * len(report.psi)
            if drifted:
                shifted = ", ".join(f"{k} {v:.2f}" for v, k in reversed(drifted))
                verdict = "features drifted" if report.feature_drift else "features with a PSI above the threshold"
                details.append(f"{verdict} ({len(drifted)} of {len(report.psi)}): {shifted}")
    else:
        details.append("no trained model: no training window to compare the features with")
    made_at, errors = squared_errors_bp(market, interval_s, horizon, settings.DRIFT_ERROR_WINDOW)
    report.error_rows = len(errors)
    if len(errors):
        found = error_drift(errors, settings.DRIFT_ADWIN_DELTA, settings.DRIFT_ERROR_RATIO)
        report.error_drift = found["detected"]
        if found["at"] is not None:
            report.error_mean_before, report.error_mean_after = found["before"], found["after"]
        if found["detected"]:
            report.error_change_at = made_at[found["at"]]
            details.append(
                f"error level changed at {made_at[found['at']]:%Y-%m-%d %H:%M:%S}: mean squared error "
                f"{found['before']:.3g} → {found['after']:.3g} bp² ({found['detections']} ADWIN detection(s))"
            )
    report.detail = "; ".join(details)
    report.save()
    if report.drifted and settings.DRIFT_RETRAIN:
        queue_retraining(market, report)
    return report


def queue_retraining(market: Market, report: DriftReport) -> bool:
    """An early training run of the market, at most once per DRIFT_RETRAIN_COOLDOWN; True if queued."""
    since = timezone.now() - timedelta(seconds=settings.DRIFT_RETRAIN_COOLDOWN_S)
    if DriftReport.objects.filter(market=market, retrain_queued=True, computed_at__gte=since).exists():
        return False
    from modeling.tasks import train_market_task

    train_market_task.delay(market.name)
    DriftReport.objects.filter(pk=report.pk).update(retrain_queued=True)
    report.retrain_queued = True
    if report.reference is not None:
        ModelEvent.objects.create(
            artifact=report.reference,
            action="drift retrain",
            from_status=report.reference.status,
            to_status=report.reference.status,
            reason=f"early retraining queued (DRIFT_RETRAIN): {report.detail}"[:2000],
        )
    log.info("%s: drift (%s); early retraining queued", market, report.detail)
    return True
