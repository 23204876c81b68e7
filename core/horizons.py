"""The prediction horizons (PREDICTION_HORIZONS, in candle intervals) and reading one from a client."""

from __future__ import annotations

from django.conf import settings


class HorizonError(ValueError):
    """A client asked for a horizon that is not predicted; the message says which ones are."""


def configured() -> tuple[int, ...]:
    """Every horizon, shortest first."""
    return tuple(sorted(set(settings.PREDICTION_HORIZONS)))


def shortest() -> int:
    """The horizon served where a client names none (the latest prediction, the market page's first)."""
    return configured()[0]


def parse(value: object) -> int:
    """A configured horizon from a client's value (an integer, or its digits in a query string)."""
    known = configured()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value not in known:  # not a bool, a float or a list
        shown = repr(value) if len(repr(value)) <= 20 else f"{repr(value)[:19]}…"
        raise HorizonError(f"expected one of {', '.join(map(str, known))} (candle intervals ahead), got {shown}")
    return value
