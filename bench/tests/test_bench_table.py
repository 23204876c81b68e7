"""The docs' benchmark table is generated from the recorded runs (bench/record.py's schema), row for row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.record import record
from bench.table import render


def test_each_recorded_figure_is_one_row_with_its_run(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.record.RESULTS", tmp_path)
    assert render(tmp_path).startswith("No benchmark has been recorded yet")
    figures = [
        {"name": "GET latest, p99", "value": 4.25, "unit": "ms", "target": "<= 10", "met": True},
        {"name": "pushes | per second", "value": 12345.6, "unit": "msg/s", "target": None, "met": None},
    ]
    record("api", figures, argv=["bench/api.py", "--clients", "50"])
    record("train", [{"name": "fit", "value": 80.0, "unit": "s", "target": "<= 60", "met": False}], ["train.py"])
    lines = render(tmp_path).splitlines()
    assert lines[0].startswith("| figure | value | target | met | command | date | machine | load")
    assert len(lines) == 2 + 3  # header, rule, one row per figure
    first, second, third = lines[2:]
    assert first.startswith("| GET latest, p99 | 4.25 ms | <= 10 | yes | `python bench/api.py --clients 50` | ")
    assert "| pushes \\| per second | 12,346 msg/s | — | — |" in second  # a pipe in a name stays in its cell
    assert third.startswith("| fit | 80 s | <= 60 | **no** | `python bench/train.py` |")
    assert all(row.count(" | ") == 7 for row in (first, third))


def test_the_script_prints_the_table():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "bench/table.py"], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.startswith(("| figure |", "No benchmark has been recorded yet"))
