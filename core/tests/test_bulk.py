"""upsert: bulk_create's conflict handling, through COPY for many rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core import bulk
from features.models import FeatureRow
from markets.names import get_or_create_market

pytestmark = pytest.mark.django_db

KEY = ["market", "interval_s", "version", "start"]


def rows(market, close: str, n: int = 3) -> list[FeatureRow]:
    return [
        FeatureRow(
            market=market,
            interval_s=10,
            start=datetime(2024, 8, 8, 0, 0, 10 * i, tzinfo=UTC),
            version="v1",
            values={"ret_1": 0.5 * i, "note": 'tab\there, "quoted" \\ and none', "missing": None},
            close=Decimal(close),
        )
        for i in range(n)
    ]


def stored(market) -> list[tuple]:
    return list(FeatureRow.objects.filter(market=market).order_by("start").values_list("start", "values", "close"))


@pytest.mark.parametrize("copy_min_rows", [0, 1000], ids=["copy", "bulk_create"])
def test_inserts_then_updates_or_keeps_on_conflict(monkeypatch, copy_min_rows):
    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", copy_min_rows)
    market = get_or_create_market("kraken:ETH-USD")
    bulk.upsert(FeatureRow, rows(market, "2683.123456789012"), KEY)
    first = stored(market)
    assert [r[1] for r in first] == [r.values for r in rows(market, "1")]  # JSON round trip, escapes included
    assert [r[2] for r in first] == [Decimal("2683.123456789012")] * 3
    assert FeatureRow.objects.filter(market=market, created_at__isnull=False).count() == 3  # auto_now_add ran

    bulk.upsert(FeatureRow, rows(market, "1", n=4), KEY)  # conflicts skipped, one new row
    assert stored(market)[:3] == first and stored(market)[3][2] == Decimal("1")
    bulk.upsert(FeatureRow, rows(market, "2"), KEY, ["values", "close"])
    assert [r[2] for r in stored(market)] == [Decimal("2")] * 3 + [Decimal("1")]
    bulk.upsert(FeatureRow, [], KEY)
    assert len(stored(market)) == 4
