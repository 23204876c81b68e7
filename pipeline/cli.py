"""Option parsing shared by the commands that replay into the pipeline: one-line CommandErrors."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.durations import parse_duration


def parse_speed(raw: str) -> float | None:
    if raw == "max":
        return None
    try:
        speed = float(raw)
    except ValueError:
        speed = 0.0
    if not speed > 0 or speed == float("inf"):
        raise CommandError(f"--speed: expected max or a positive factor (e.g. 10), got {raw!r}")
    return speed


def duration_option(option: str, raw: str) -> int:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None
