"""Live metrics equal a direct computation over the stored, scored predictions."""

from __future__ import annotations

import math

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from inference.metrics import live_metrics, model_live_metrics
from inference.models import Prediction
from markets.models import BookWindow
from modeling import registry
from pipeline.entry import replay

from .conftest import train_model

pytestmark = pytest.mark.django_db


def direct(predictions: list[Prediction]) -> dict:
    """Plain-Python reference, one prediction at a time (no move predicted on a moving window = half right)."""

    def side(price, lower, upper) -> dict:
        n = len(predictions)
        errors = [float(price(p) - p.realized) for p in predictions]
        moved = [p for p in predictions if p.realized != p.base_close]
        agree = [
            0.5 if price(p) == p.base_close else float((price(p) > p.base_close) == (p.realized > p.base_close))
            for p in moved
        ]
        return {
            "rows": n,
            "rmse": math.sqrt(sum(e * e for e in errors) / n),
            "rmse_bps": math.sqrt(
                sum((e / float(p.base_close)) ** 2 for e, p in zip(errors, predictions, strict=True)) / n
            )
            * 1e4,
            "mae": sum(abs(e) for e in errors) / n,
            "mae_bps": sum(abs(e) / float(p.base_close) for e, p in zip(errors, predictions, strict=True)) / n * 1e4,
            "directional_accuracy": sum(agree) / len(moved) if moved else None,
            "moved_rows": len(moved),
            # Only predictions with an interval: a zero-width band is none.
            "coverage_80": sum(lower(p) <= p.realized <= upper(p) for p in banded) / len(banded) if banded else None,
        }

    banded = [p for p in predictions if p.lower < p.upper]

    persistence = side(lambda p: p.base_close, lambda p: p.base_close, lambda p: p.base_close)
    persistence["coverage_80"] = None
    return {
        "count": len(predictions),
        "interval_rows": len(banded),
        "since": min(p.made_at for p in predictions).isoformat().replace("+00:00", "Z"),
        "until": max(p.made_at for p in predictions).isoformat().replace("+00:00", "Z"),
        "model": side(lambda p: p.price, lambda p: p.lower, lambda p: p.upper),
        "persistence": persistence,
    }


def assert_close(actual: dict, expected: dict) -> None:
    for key in ("count", "interval_rows", "since", "until"):
        assert actual[key] == expected[key], key
    for side in ("model", "persistence"):
        for name, value in expected[side].items():
            if value is None:
                assert actual[side][name] is None, (side, name)
            else:
                assert actual[side][name] == pytest.approx(value, rel=1e-9), (side, name)


@override_settings(LIVE_METRICS_WINDOW=150)
def test_live_metrics_equal_a_direct_computation(market, parts):
    replay(parts[0], market)
    artifact = train_model(market)
    registry.promote(artifact, reason="test")
    replay(parts[1], market)
    replay(parts[2], market)

    scored = Prediction.objects.filter(market=market, horizon=1, realized__isnull=False).order_by("-made_at")
    by_model = list(scored.filter(model=artifact))
    by_persistence = list(scored.filter(model__isnull=True))
    assert len(by_model) > 150 and len(by_persistence) > 50  # the window cuts the model's history

    metrics = live_metrics(market)
    assert (metrics["market"], metrics["window"], metrics["horizon"]) == ("kraken:ETH-USD", 150, 1)
    assert_close(metrics["served"], direct(list(scored[:150])))
    groups = {g["served_by"]["id"]: g for g in metrics["models"]}
    assert groups.keys() == {None, artifact.pk}
    assert groups[artifact.pk]["served_by"] == {"id": artifact.pk, "version": 1, "algorithm": "ridge"}
    assert groups[None]["served_by"]["algorithm"] == "persistence"
    assert_close(groups[artifact.pk], direct(by_model[:150]))
    assert_close(groups[None], direct(by_persistence[:150]))
    assert_close(model_live_metrics(artifact), direct(by_model[:150]))
    # Served by persistence, the model and persistence columns coincide.
    assert groups[None]["model"]["rmse"] == groups[None]["persistence"]["rmse"]
    assert groups[None]["persistence"]["directional_accuracy"] == 0.5
    # Persistence served before any training run had no band: never counted as inside an 80 % interval.
    assert groups[None]["interval_rows"] == 0 and groups[None]["model"]["coverage_80"] is None
    assert groups[artifact.pk]["interval_rows"] == groups[artifact.pk]["count"]


def test_no_scored_predictions_yet(market):
    metrics = live_metrics(market)
    assert metrics["served"] == {
        "count": 0, "since": None, "until": None, "interval_rows": 0, "model": None, "persistence": None,
        "direction": None, "value": None,
    }  # fmt: skip
    assert metrics["models"] == []


def test_live_direction_metrics_equal_a_direct_computation(market, parts):
    """The served P(up) calls on the windows that moved, next to the base rate's, as plain Python counts them."""
    replay(parts[0], market)
    scored = list(Prediction.objects.filter(market=market, horizon=1, realized__isnull=False).order_by("made_at"))
    for i, p in enumerate(scored):
        p.p_up, p.p_up_base = (0.3, 0.7, 0.5)[i % 3], 0.45
    Prediction.objects.bulk_update(scored, ["p_up", "p_up_base"])
    moved = [p for p in scored if p.realized != p.base_close]
    assert len(moved) > 20
    up = [p.realized > p.base_close for p in moved]
    right = [0.5 if p.p_up == 0.5 else float((p.p_up > 0.5) == u) for p, u in zip(moved, up, strict=True)]
    base_right = [float(not u) for u in up]  # 0.45: always "down"
    direction = live_metrics(market)["served"]["direction"]
    assert direction["moved_rows"] == len(moved)
    assert direction["accuracy"] == pytest.approx(sum(right) / len(moved), rel=1e-12)
    assert direction["base_rate_accuracy"] == pytest.approx(sum(base_right) / len(moved), rel=1e-12)
    brier = sum((p.p_up - u) ** 2 for p, u in zip(moved, up, strict=True)) / len(moved)
    assert direction["brier"] == pytest.approx(brier, rel=1e-12)
    assert direction["brier_reference"] == pytest.approx(sum((0.45 - u) ** 2 for u in up) / len(moved), rel=1e-12)
    log_loss = -sum(math.log(p.p_up if u else 1 - p.p_up) for p, u in zip(moved, up, strict=True)) / len(moved)
    assert direction["log_loss"] == pytest.approx(log_loss, rel=1e-9)


def test_live_metrics_read_the_book_once_and_one_query_per_model(market, parts):
    """Queries grow by one per model group (its newest window), the book is read once for all groups."""

    def queries() -> tuple[int, int, int]:
        with CaptureQueriesContext(connection) as captured:
            groups = len(live_metrics(market)["models"])
        book = sum(f'"{BookWindow._meta.db_table}"."microprice"' in q["sql"] for q in captured.captured_queries)
        return groups, len(captured.captured_queries), book

    replay(parts[0], market)
    registry.promote(train_model(market), reason="test")
    replay(parts[1], market)
    groups, count, book = queries()
    registry.promote(train_model(market), reason="test")
    replay(parts[2], market)
    more_groups, more_count, more_book = queries()
    assert (groups, more_groups) == (2, 3)
    assert (book, more_book) == (1, 1)
    assert more_count == count + 1
