"""One schema for every benchmark's figures: `bench/results/<name>.json`, read by the docs' table.

A script calls `record(name, figures)` when run with `--record`; the file holds the command that
produced it, when, on what machine and at what load, and one entry per figure with its target.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

RESULTS = Path(__file__).resolve().parent / "results"


class Figure(TypedDict, total=False):
    name: str  # what was measured, e.g. "GET markets/ while streaming, p99"
    value: float
    unit: str  # "req/s", "ms", "µs", "x (ratio)"
    target: str | None  # e.g. "<= 100" or ">= 0.6"; None when the figure has no goal
    met: bool | None


def machine() -> str:
    """The machine as a reader can compare it: cores, processor, OS."""
    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.system()}"


def record(name: str, figures: list[Figure], argv: list[str] | None = None) -> Path:
    """Write the figures of one run to bench/results/<name>.json (replacing the previous run's)."""
    RESULTS.mkdir(exist_ok=True)
    argv = sys.argv if argv is None else argv
    payload = {
        "command": "python " + shlex.join(["bench/" + Path(argv[0]).name, *argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": [round(x, 2) for x in os.getloadavg()],
        "figures": figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path
