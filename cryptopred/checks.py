"""System checks of setting values that parse but make no sense (run by every management command)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

RANGES = [
    # (setting, test, what it must be)
    ("PORT", lambda v: 1 <= v <= 65535, "a port number (1-65535)"),
    ("TRAIN_VALIDATION_FRACTION", lambda v: 0.1 <= v <= 0.9, "between 0.1 and 0.9"),
    ("PROMOTION_MARGIN", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("PROMOTION_SIGNIFICANCE", lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    ("HEALTH_TIMEOUT_S", lambda v: 0.0 < v <= 10.0, "in (0, 10] seconds"),
    ("STEP_RETRY_BASE_S", lambda v: v > 0, "positive"),
    ("STEP_RETRY_MAX_S", lambda v: v >= settings.STEP_RETRY_BASE_S, "at least STEP_RETRY_BASE_S"),
    ("CANDLE_GRACE_MODE", lambda v: v in {"adaptive", "fixed"}, "adaptive or fixed"),
    ("CANDLE_GRACE_QUANTILE", lambda v: 0.5 <= v <= 1.0, "in [0.5, 1]"),
    ("CANDLE_GRACE_MARGIN_S", lambda v: 0.0 <= v <= settings.CANDLE_GRACE_S, "in [0, CANDLE_GRACE_S]"),
    ("BOOK_DEPTH", lambda v: v in {10, 25, 100, 500, 1000}, "one of Kraken's depths 10, 25, 100, 500, 1000"),
    ("DRIFT_PSI_THRESHOLD", lambda v: v > 0, "positive"),
    ("DRIFT_FEATURE_SHARE", lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    ("DRIFT_ADWIN_DELTA", lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    ("DRIFT_ERROR_RATIO", lambda v: v >= 1.0, "at least 1"),
    ("CHALLENGER_HOURS", lambda v: v >= 0, "0 (no challengers) or more"),
    (
        "PREDICTION_HORIZONS",
        lambda v: bool(v) and all(type(h) is int and h >= 1 for h in v),
        "one or more positive whole numbers of candle intervals",
    ),
]


def rate_ok(rate: str) -> bool:
    count, _, period = rate.partition("/")
    return count.isdigit() and period[:1] in {"s", "m", "h", "d"}


E002 = "cryptopred.E002"


@register()
def check_settings(app_configs, **kwargs) -> list[Error]:
    errors = [
        Error(f"{name}: must be {what}, got {getattr(settings, name)!r}", id="cryptopred.E001")
        for name, test, what in RANGES
        if not test(getattr(settings, name))
    ]
    errors += [
        Error(
            f"{name}: expected N/second, N/minute, N/hour or N/day, got {getattr(settings, name)!r}",
            id="cryptopred.E002",
        )
        for name in ("API_THROTTLE_RATE", "API_ANON_THROTTLE_RATE")
        if not rate_ok(getattr(settings, name))
    ]
    return errors
