"""Option parsing shared by the modeling commands: one-line CommandErrors."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.durations import parse_duration


def duration_option(raw: str, option: str) -> int:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def bps_option(raw: str, option: str) -> float:
    """A cost in basis points: a finite number from 0 to 10,000 (100 %)."""
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 10_000:  # NaN fails too
        raise CommandError(f"{option}: expected basis points from 0 to 10000, got {raw!r}")
    return value


def metrics_table(rows: dict[str, dict | None]) -> str:
    """Metrics side by side, one line per candidate, for terminal output."""
    keys = ["rows", "rmse", "mae", "mae_bps", "directional_accuracy", "coverage_80", "persistence_rmse"]
    lines = [" " * 36 + "".join(f"{k:>22}" for k in keys)]
    for name, metrics in rows.items():
        if metrics is None:
            continue
        cells = [_num(metrics.get(k)) for k in keys]
        lines.append(f"{name:<36}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def _num(value) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.6g}"
