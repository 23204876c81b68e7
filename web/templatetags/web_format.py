"""Number formatting shared by the trader pages (the browser side mirrors it in static/web/format.js)."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()
NONE = "—"


@register.filter
def price(value: Decimal | float | str | None) -> str:
    """Thousands separators; 2 decimals from 1 up, 6 significant digits below."""
    if value is None or value == "":
        return NONE
    number = Decimal(str(value))
    if abs(number) >= 1:
        return f"{number:,.2f}"
    return f"{number:.6g}"


@register.filter
def minus(value: Decimal | None, other: Decimal | None) -> Decimal | None:
    if value is None or other is None:
        return None
    return value - other


@register.filter
def percent(value: float | None) -> str:
    return NONE if value is None or value == "" else f"{100 * value:.1f} %"


@register.filter
def metric(value: float | None) -> str:
    return NONE if value is None or value == "" else f"{value:.4g}"
