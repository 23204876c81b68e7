"""Durations written as 10s, 1m, 6h, 7d (command options and settings)."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(text: str) -> int:
    """Seconds in text, e.g. '6h' -> 21600; ValueError with the expected syntax otherwise."""
    match = DURATION_RE.match(str(text))
    if not match or int(match[1]) == 0:
        raise ValueError(f"invalid duration {text!r}: expected a positive number with s, m, h or d, e.g. 10s, 1m, 6h")
    return int(match[1]) * UNITS[match[2]]
