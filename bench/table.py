"""The docs' benchmark table, generated from bench/results/*.json (schema: bench/record.py).

`python bench/table.py` prints it; the docs build inserts it into the Benchmarks page (docs/hooks.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ itself is on sys.path
    from record import RESULTS
else:
    from bench.record import RESULTS

MET = {True: "yes", False: "**no**", None: "—"}


def row(cells) -> str:
    """A Markdown table row; a pipe inside a cell is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


COLUMNS = ("figure", "value", "target", "met", "command", "date", "machine", "load (1/5/15 min)")
HEADER = row(COLUMNS) + "\n" + row(["---"] * len(COLUMNS))


def value(figure: dict) -> str:
    number = figure["value"]
    shown = f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
    return f"{shown} {figure.get('unit', '')}".strip()


def render(results: Path = RESULTS) -> str:
    """One row per figure of every recorded run, by file name, in each file's order."""
    rows = []
    for path in sorted(results.glob("*.json")):
        run = json.loads(path.read_text())
        load = "/".join(f"{x:g}" for x in run["load"])
        command = f"`{run['command']}`"
        for figure in run["figures"]:
            target = figure.get("target") or "—"
            met = MET[figure.get("met")]
            rows.append(
                row([figure["name"], value(figure), target, met, command, run["date"][:10], run["machine"], load])
            )
    if not rows:
        return "No benchmark has been recorded yet: run a script of `bench/` with `--record`."
    return "\n".join([HEADER, *rows])


if __name__ == "__main__":
    sys.stdout.write(render() + "\n")
