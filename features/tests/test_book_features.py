"""Feature set v2 (v1 + order book): one engine live and in batch, point in time, per market."""

from __future__ import annotations

from datetime import timedelta

import pytest

from features import definitions, engine
from features.models import FeatureRow
from markets.models import BookWindow, Candle
from markets.names import get_or_create_market
from pipeline.entry import replay, replay_book
from testsupport.data import BITSTAMP_BOOK, BITSTAMP_TRADES, SAMPLE
from testsupport.feed import stream_with_book

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_horizon")]
MARKET = "bitstamp:BTC-USD"


@pytest.fixture
def bitstamp():
    """The real Bitstamp BTC/USD L2 book and trades of 2015-05-01 00:00-03:00, replayed (book first)."""
    market = get_or_create_market(MARKET)
    replay_book(BITSTAMP_BOOK, market)
    replay(BITSTAMP_TRADES, market)
    return market


def test_live_rows_equal_batch_rows_for_every_book_feature():
    """Book and trades streamed on one clock, the step after every 5 minutes; then one batch computation."""
    market = get_or_create_market(MARKET)
    runs = stream_with_book(BITSTAMP_BOOK, BITSTAMP_TRADES, market, every_s=300)

    live = {r.start: r for r in FeatureRow.objects.filter(market=market, interval_s=10)}
    assert {r.version for r in live.values()} == {definitions.BOOK_VERSION}
    assert len([r for r in runs if r.features]) >= 36  # really incremental: every 5 minutes for 3 hours
    assert sum(r.features for r in runs) == len(live) > 1000  # each window once
    first, last = min(live), max(live)
    batch = engine.compute_features(market, 10, first, last)
    assert batch.version == definitions.BOOK_VERSION and len(batch) == len(live)
    assert set(definitions.BOOK_FEATURES) <= set(batch.names)
    known = dict.fromkeys(definitions.BOOK_FEATURES, 0)
    for i, start in enumerate(batch.starts):
        row = live[start]
        assert row.values == batch.values(i), start  # exact: same floats, same None
        assert (row.close, row.mid) == (batch.closes[i], batch.mids[i])
        for name in definitions.BOOK_FEATURES:
            known[name] += row.values[name] is not None
    # Not vacuous: every book feature has real values after the warm-up, and they vary.
    assert min(known.values()) > 1000, known
    discrete = {"mid_unchanged": 20, "spread_ticks": 20}  # counts of windows, ratios of a few spreads
    for name in definitions.BOOK_FEATURES:
        assert len({r.values[name] for r in live.values()}) > discrete.get(name, 50), name
    # The mid is the book's, the close the last trade's: both stored, different where they differ.
    book = dict(BookWindow.objects.filter(market=market).values_list("start", "mid"))
    assert all(r.mid == book[s] for s, r in live.items())
    assert sum(r.mid != r.close for r in live.values()) > 900


def test_the_row_of_a_window_reads_the_book_up_to_its_end_only(bitstamp):
    """Changing later book windows leaves earlier rows as they are; the row of the changed window moves."""
    starts = list(BookWindow.objects.filter(market=bitstamp).order_by("start").values_list("start", flat=True))
    t = starts[500]
    before = engine.compute_features(bitstamp, 10, t - timedelta(seconds=600), t)
    BookWindow.objects.filter(market=bitstamp, start__gt=t).update(
        bid_qty=1000, ask_qty=1, microprice=10**6, ofi=1e6, imbalance_tw=1, depth_imbalance=1, updates=999
    )
    after = engine.compute_features(bitstamp, 10, t - timedelta(seconds=600), t)
    assert [after.values(i) for i in range(len(after))] == [before.values(i) for i in range(len(before))]
    assert after.mids == before.mids
    later = engine.compute_features(bitstamp, 10, t + timedelta(seconds=10), t + timedelta(seconds=10)).values(0)
    assert later["micro_dev"] != before.values(len(before) - 1)["micro_dev"]
    assert later["ofi_1"] > 1000


def test_the_feature_set_and_target_follow_the_market(bitstamp):
    gemini = get_or_create_market("gemini:ETH-USD")
    assert (engine.feature_version(gemini), engine.market_target(gemini)) == (definitions.VERSION, "close")
    assert (engine.feature_version(bitstamp), engine.market_target(bitstamp)) == (definitions.BOOK_VERSION, "mid")
    assert engine.feature_version(bitstamp, 60) == definitions.VERSION  # no book windows at 1 minute
    # Every window with a candle and a book window has a v2 row with both prices, none v1.
    rows = FeatureRow.objects.filter(market=bitstamp)
    assert set(rows.values_list("version", flat=True)) == {definitions.BOOK_VERSION}
    assert rows.count() == Candle.objects.filter(market=bitstamp).count() and not rows.filter(mid=None).exists()
    # v1 rows of the same market are the v1 columns of v2, unchanged by the book.
    t = rows.order_by("start")[300].start
    v1 = engine.compute_features(bitstamp, 10, t, t, definitions.VERSION)
    v2 = engine.compute_features(bitstamp, 10, t, t, definitions.BOOK_VERSION)
    assert v1.names == v2.names[: len(v1.names)] and v1.mids is None
    assert v1.values(0) == {n: v for n, v in v2.values(0).items() if n in v1.names}


def test_a_market_without_a_book_keeps_v1_rows():
    kraken = get_or_create_market("kraken:ETH-USD")
    replay(SAMPLE / "kraken_ETHUSD_trades_2022-03-20.csv.gz", kraken)
    rows = FeatureRow.objects.filter(market=kraken)
    assert rows.count() > 600 and set(rows.values_list("version", flat=True)) == {definitions.VERSION}
    assert not rows.exclude(mid=None).exists()
