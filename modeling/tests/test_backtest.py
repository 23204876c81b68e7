"""manage.py backtest: walk-forward as production runs it, no look-ahead, clear errors."""

from __future__ import annotations

import csv
import json

import pytest
from django.core.management import CommandError

from modeling.tests.conftest import ETH
from testsupport.feed import run

KEYS = {"rmse", "mae", "mae_bps", "directional_accuracy", "coverage_80"}
ARGS = ["--market", ETH, "--interval", "1m", "--train-window", "12h", "--retrain-every", "8h", "--json"]


def backtest(*extra) -> dict:
    return json.loads(run("backtest", *ARGS, *extra))


def test_backtest_json_and_predictions_csv(eth, tmp_path):
    out = tmp_path / "predictions.csv"
    result = backtest("--out", str(out))
    assert {"market", "interval_s", "horizon", "rows", "served", "persistence", "by_algorithm"} <= set(result)
    assert (result["market"], result["interval_s"], result["horizon"]) == (ETH, 60, 1)
    assert KEYS <= set(result["served"]) and KEYS <= set(result["persistence"])
    # Predictions start after the first training window: 2 days minus 12 h of 1-minute windows, minus the last.
    assert result["rows"] == 2 * 1440 - 12 * 60 - 1
    assert sum(m["rows"] for m in result["by_algorithm"].values()) == result["rows"]
    assert len(result["retrains"]) == 5
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["rows"]
    assert rows[0]["made_at"] == "2024-08-08T12:01:00Z" and rows[0]["target_time"] == "2024-08-08T12:02:00Z"
    served = {r["algorithm"] for r in rows}
    assert served == set(result["by_algorithm"])
    for r in rows[:50]:
        assert float(r["lower"]) <= float(r["price"]) <= float(r["upper"])


def test_no_look_ahead(eth, tmp_path):
    """Predictions up to a time are the same whether or not later data exists."""
    run("backtest", *ARGS, "--out", str(tmp_path / "full.csv"))
    run("backtest", *ARGS, "--end", "2024-08-09T08:00:00Z", "--out", str(tmp_path / "short.csv"))
    full = (tmp_path / "full.csv").read_text().splitlines()
    short = (tmp_path / "short.csv").read_text().splitlines()
    assert len(short) > 1000 and len(full) > len(short) + 900
    assert full[: len(short)] == short


def test_start_is_the_first_predicted_window(eth, tmp_path):
    """--start is what is evaluated; the first model trains on the --train-window before it."""
    out = tmp_path / "from_18h.csv"
    result = backtest("--start", "2024-08-08T18:00:00Z", "--out", str(out))
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["made_at"] == "2024-08-08T18:01:00Z"  # the window that starts at --start, predicted at its end
    assert result["retrains"][0]["at"] == "2024-08-08T18:00:00Z" and result["retrains"][0]["rows"] > 600


BAD = [
    (["--train-window", "3d"], r"--train-window \(3d\) covers all the stored data .*: nothing left to predict"),
    (["--start", "2024-08-08T00:00:00Z"], "needs usable 60s windows in the --train-window .* before --start"),
    (["--start", "2024-08-09T00:00:00Z", "--end", "2024-08-08T00:00:00Z"], "--end .* must be after --start"),
    (["--start", "yesterday"], "--start: expected an ISO-8601 time"),
    (["--retrain-every", "0h"], "--retrain-every: invalid duration"),
    (["--interval", "10s"], "has no 10s candles stored"),
]


def test_bad_input(eth):
    for extra, message in BAD:
        with pytest.raises(CommandError, match=message):
            run("backtest", *ARGS, *extra)
