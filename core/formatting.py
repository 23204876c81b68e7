"""Number formatting shared by the trader pages and the admin (the browser side mirrors it in static/web/format.js).

One format per quantity: prices at the market's precision (its decimals, see web.pages.price_decimals),
errors in basis points of the price with two decimals, shares in percent with one, models by a friendly label.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

NONE = "—"
NO_INTERVAL = "no interval yet"
DEFAULT_DECIMALS = 2
ALGORITHM_LABELS = {
    "hist_gradient_boosting": "Gradient boosting",
    "ridge": "Ridge",
    "persistence": "Persistence",
}


def _empty(value) -> bool:
    return value is None or value == ""


def price(value: Decimal | float | str | None, decimals: int | None = None) -> str:
    """Thousands separators and the market's decimals (2 when unknown)."""
    if _empty(value):
        return NONE
    places = DEFAULT_DECIMALS if _empty(decimals) else int(decimals)
    number = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return f"{number:,.{places}f}"


def interval(prediction, decimals: int | None = None) -> str:
    """The band as "lower to upper" prices, or "no interval yet" for a zero-width band (never an 80 % interval)."""
    if prediction is None or prediction == "":
        return NONE
    if prediction.lower >= prediction.upper:
        return NO_INTERVAL
    return f"{price(prediction.lower, decimals)} \N{EN DASH} {price(prediction.upper, decimals)}"


def up_percent(p_up: float | None) -> int | None:
    """P(up) in whole percent, halves rounded up (as Math.round in format.js): the figure the pages show."""
    return None if _empty(p_up) else int(Decimal(str(100 * float(p_up))).to_integral_value(rounding=ROUND_HALF_UP))


def up_call(p_up: float | None) -> str | None:
    """The direction call of P(up) as shown: "up" above 50 %, "down" below, "flat" at 50 %; None without one.

    Derived from the displayed whole percent, so the arrow never contradicts the P(up) next to it.
    """
    shown = up_percent(p_up)
    return None if shown is None else "up" if shown > 50 else "down" if shown < 50 else "flat"


def move(prediction, decimals: int | None = None) -> str:
    """The predicted price minus the price it started from at the market's decimals, signed; "flat" when that
    rounds to zero (the price shown would not move)."""
    if prediction is None or prediction == "" or prediction.base_close is None:
        return NONE
    change = price(prediction.price - prediction.base_close, decimals)
    if not any(c in "123456789" for c in change):
        return "flat"
    return change if change.startswith("-") else f"+{change}"


def window(prediction) -> str:
    """Which window a prediction is for: "close at 06:00:40, made 06:00:30" (its target, at its target time)."""
    if prediction is None or prediction == "":
        return ""
    return f"{prediction.target} at {prediction.target_time:%H:%M:%S}, made {prediction.made_at:%H:%M:%S}"


def error_bps(prediction) -> str:
    """Predicted minus realized price in basis points of the close it started from, signed; — until scored."""
    if prediction is None or prediction.realized is None or not prediction.base_close:
        return NONE
    return f"{float((prediction.price - prediction.realized) / prediction.base_close) * 1e4:+.2f}"


def bps(value: float | None) -> str:
    return NONE if _empty(value) else f"{value:.2f}"


def percent(value: float | None) -> str:
    return NONE if _empty(value) else f"{100 * value:.1f} %"


def count(value: int | None) -> str:
    return NONE if _empty(value) else f"{value:,}"


def algorithm_label(algorithm: str | None) -> str:
    if not algorithm:
        return ALGORITHM_LABELS["persistence"]
    return ALGORITHM_LABELS.get(algorithm, algorithm.replace("_", " ").capitalize())


def model_label(obj) -> str:
    """ "Gradient boosting v3", "Ridge v2", "Persistence": of a ModelArtifact, a Prediction or a served_by dict."""
    if obj is None or obj == "":
        return NONE
    if isinstance(obj, dict):
        algorithm, version = obj.get("algorithm"), obj.get("version")
    elif hasattr(obj, "model_version"):  # a prediction
        algorithm, version = obj.algorithm, obj.model_version
    else:
        algorithm, version = obj.algorithm, obj.version
    label = algorithm_label(algorithm)
    return f"{label} v{version}" if version is not None and algorithm != "persistence" else label


def iso_stamp(value: str | None) -> str:
    """An API time ("2021-07-01T06:00:30Z") as "2021-07-01 06:00:30" (UTC, like every time on the pages)."""
    return NONE if _empty(value) else str(value)[:19].replace("T", " ")
