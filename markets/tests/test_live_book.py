"""Live order books: Kraken v2 `book` (checksummed) and Coinbase `level2` (sequenced) through the stream runner.

The stand-in exchanges publish a real L2 book (Bitstamp BTC/USD snapshots) at
a real book's pace (a state every 50 to 200 ms) as live messages of the
documented shapes (a Kraken snapshot has no timestamp); every stored window's
top of book must equal the exchange's own book as of the window end. Windows
that end while a disruption (a lost message, a cut connection, a bad frame)
left the client without a known book must have no row, and every other window
must have one.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, override_settings

from core import prometheus
from core.lease import Lease
from markets.book.orderbook import OrderBook
from markets.models import BookWindow, Market
from markets.names import get_or_create_market, stream_key
from markets.streams.livebook import BookIngestor
from markets.streams.runner import StreamRunner
from markets.streams.sources.base import BookMessage, MalformedBook, load_frame
from markets.streams.sources.coinbase import CoinbaseSource
from markets.streams.sources.kraken import KrakenSource
from testsupport.data import SAMPLE
from testsupport.fake_coinbase_book import FakeCoinbaseBook
from testsupport.fake_kraken_book import Event, FakeKrakenBook, L2Feed, kraken_crc32
from testsupport.feed import run_until

pytestmark = pytest.mark.django_db(transaction=True)
# Longer than the feed's longest pause around a lost update, so that no window closes before the next update
# can reveal the loss (the client cannot know sooner).
GRACE_S = 1.0
RESYNC_BOUND_S = 1.0  # a lost update: from the next update sent to the resync's snapshot sent
CAPTURE = SAMPLE / "messages" / "coinbase_advanced_ws_level2.jsonl"
VECTOR = SAMPLE / "messages" / "kraken_ws_v2_book_snapshot_checksum_vector.json"


@pytest.fixture
def feed():
    feed = L2Feed().start()
    yield feed
    feed.stop()


@pytest.fixture
def fast(settings):
    settings.CANDLE_GRACE_S = GRACE_S
    settings.CANDLE_GRACE_MODE = "fixed"  # trades' lag would shorten it
    settings.STREAM_BACKOFF_BASE_S = 0.05
    settings.STREAM_BACKOFF_MAX_S = 0.2
    settings.BOOK_DEPTH = 10


def one_second_market(name: str) -> Market:
    market = get_or_create_market(name)
    Market.objects.filter(pk=market.pk).update(interval_s=1)
    market.refresh_from_db()
    return market


def disruptions(events: list[Event], interval_s: int) -> list[tuple[datetime, datetime]]:
    """(last state the client surely had, when it surely had the book back) around each disruption.

    A lost message: the client had the state of the update before it. A cut
    connection or a bad frame sent after an update: the client had that update.
    The book is back with the next snapshot: a snapshot without a timestamp
    counts when it is received, so up to a window after it was sent.
    """
    out = []
    for i, event in enumerate(events):
        if event.what not in {"lost", "drop", "inject"}:
            continue
        good = event.ts
        if event.what == "lost":
            good = next(e.ts for e in reversed(events[:i]) if e.what in {"update", "snapshot"})
        resumed = next((e.sent_at for e in events[i:] if e.what == "snapshot"), None)
        assert resumed is not None, f"no snapshot after the {event.what} at {good}"
        out.append((good, resumed + timedelta(seconds=interval_s)))
    return out


def check_windows(market: Market, feed: L2Feed, disrupted: list[tuple[datetime, datetime]]) -> int:
    """Every stored window equals the exchange's top of book at its end; from the first stored one on, every window
    has a row unless it ended within a disruption. Returns the number of windows compared."""
    rows = {w.start: w for w in BookWindow.objects.filter(market=market, interval_s=market.interval_s)}
    assert rows, "no book window stored"
    step = timedelta(seconds=market.interval_s)
    compared = 0
    start, last = min(rows), max(rows)
    while start <= last:
        end = start + step
        row = rows.get(start)
        if row is not None:
            stored = (row.bid_price, row.bid_qty, row.ask_price, row.ask_qty)
            assert stored == feed.truth_before(end), f"window ending {end}"
            compared += 1
        else:
            assert any(good < end <= back for good, back in disrupted), f"no window ending {end}"
        start = end
    return compared


# --- parsers -------------------------------------------------------------------------------
def test_stand_in_checksum_is_kraken_s():
    """The stand-in's own checksum code gives the real vector's checksum (and so can judge the client's)."""
    entry = json.loads(VECTOR.read_text())["data"][0]
    bids = [(Decimal(str(level["price"])), Decimal(str(level["qty"]))) for level in entry["bids"]]
    asks = [(Decimal(str(level["price"])), Decimal(str(level["qty"]))) for level in entry["asks"]]
    assert kraken_crc32(bids, asks, 1, 8) == entry["checksum"] == 3310070434


def test_kraken_book_and_instrument_frames_parse():
    market = Market(exchange="kraken", base="BTC", quote="USD", symbol="BTC/USD")
    source = KrakenSource(market)
    frames = source.subscribe_frames()
    assert [f["params"]["channel"] for f in frames] == ["trade", "instrument"]
    # Without the precision a resync can only ask for the instrument data again.
    assert [(f["method"], f["params"]["channel"]) for f in source.book_resync_frames()] == [
        ("unsubscribe", "instrument"),
        ("subscribe", "instrument"),
    ]
    instrument = {
        "channel": "instrument",
        "type": "snapshot",
        "data": {"assets": [], "pairs": [{"symbol": "BTC/USD", "price_precision": 1, "qty_precision": 8}]},
    }
    assert source.parse(instrument) is None
    assert source.precision == (1, 8)
    (subscribe,) = source.outbox  # the book is subscribed once the precision is known
    assert subscribe["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 10, "snapshot": True}

    message = source.parse(load_frame(VECTOR.read_text()))
    assert isinstance(message, BookMessage) and message.snapshot and message.checksum == 3310070434
    assert message.bids[0] == (Decimal("45283.5"), Decimal("0.10000000")) and len(message.asks) == 10
    book = OrderBook(10)
    book.load(message.bids, message.asks)
    assert source.book_checksum(book) == message.checksum
    update = source.parse(load_frame((SAMPLE / "messages/kraken_ws_v2_fixture_book_update.json").read_text()))
    assert not update.snapshot and update.bids == [(Decimal("105944.20"), Decimal("0.250"))] and update.asks == []
    assert [f["method"] for f in source.book_resync_frames()] == ["unsubscribe", "subscribe"]
    # The trade ack alone makes the stream live; a rejected book request leaves the trades alone.
    assert source.parse({"method": "subscribe", "success": True, "result": {"channel": "trade"}, "req_id": 1})
    assert source.parse({"method": "subscribe", "success": True, "result": {"channel": "book"}}) is None
    rejected = {"method": "subscribe", "success": False, "error": "Already subscribed", "req_id": subscribe["req_id"]}
    assert source.parse(rejected) is None
    assert "rejected the book subscribe" in source.book_lost

    bad = json.loads(VECTOR.read_text())
    for edit, problem in [
        ({"qty": -1}, "negative qty -1"),
        ({"price": "abc"}, "bad level price 'abc'"),
        ({"price": 0}, "price 0 is not positive"),
    ]:
        bad["data"][0]["bids"][0] = {"price": 45283.5, "qty": 0.1} | edit
        with pytest.raises(MalformedBook, match=rf"book snapshot of BTC/USD at 2023-10-06T17:35:55.440295Z: {problem}"):
            source.parse(bad)
    bad["data"][0]["bids"][0] = {"price": 45283.5}
    with pytest.raises(MalformedBook, match="bad level in bids"):
        source.parse(bad)


def test_coinbase_level2_frames_parse_from_the_capture():
    """The captured l2_data frames: updates of the subscribed product only; sequence gaps noticed."""
    lines = CAPTURE.read_text().splitlines()
    assert json.loads(lines[0]) == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"}
    source = CoinbaseSource(Market(exchange="coinbase", base="BTC", quote="USD", symbol="BTC-USD"))
    assert [f["channel"] for f in source.subscribe_frames()] == ["market_trades", "heartbeats", "level2"]
    messages, gaps = [], []
    for line in lines[1:]:
        frame = json.loads(line)
        result = source.parse(load_frame(line))
        event = frame["events"][0]
        if event["product_id"] == "BTC-USD":
            expected = [(u["side"], Decimal(u["price_level"]), Decimal(u["new_quantity"])) for u in event["updates"]]
            got = [("bid", *level) for level in result.bids] + [("offer", *level) for level in result.asks]
            assert sorted(got) == sorted(expected) and not result.snapshot and result.checksum is None
            assert result.ts.isoformat() == frame["timestamp"][:26] + "+00:00"  # nanoseconds cut to micro
            messages.append(result)
        else:
            assert result is None
        if source.book_lost:
            gaps.append((frame["sequence_num"], source.book_lost))
            source.book_lost = None
    assert len(messages) == 16  # of 30 frames, the rest are ETH-USD
    # The capture kept level2 frames only: the other channels' sequence numbers are missing from it.
    assert gaps[0] == (22, "sequence gap: expected 20, got 22")
    assert [f["type"] for f in source.book_resync_frames()] == ["unsubscribe", "subscribe"]
    frame = json.loads(lines[1])
    for update, problem in [
        ({"side": "middle"}, "side must be bid or offer"),
        ({"new_quantity": "-0.5"}, "negative qty '-0.5'"),
        ({"price_level": "x"}, "bad level price 'x'"),
    ]:
        frame["events"][0]["updates"][0] |= update
        with pytest.raises(MalformedBook, match=f"level2 update of BTC-USD at {frame['timestamp']}: .*{problem}"):
            source.parse(frame)
        frame = json.loads(lines[1])


def test_a_crossed_book_is_lost_and_never_observed():
    market = get_or_create_market("kraken:BTC-USD")
    book = BookIngestor(market, 10)
    ts = datetime.fromisoformat("2026-01-01T00:00:00.5+00:00")
    book.apply(BookMessage(True, [(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], ts, None, "s"), 0.0)
    assert book.valid and book.windows.updates == 1
    crossed = BookMessage(False, [(Decimal(102), Decimal(1))], [], ts, None, "book update X")
    with pytest.raises(MalformedBook, match=r"book update X: crossed book after it \(best bid 102 >= best ask 101\)"):
        book.apply(crossed, 1.0)
    assert not book.valid and book.resync_at == 1.0 and book.windows.updates == 1
    book.apply(BookMessage(False, [(Decimal(99), Decimal(1))], [], ts, None, "u"), 1.1)
    assert book.stats.ignored == 1  # updates wait for a snapshot


def test_windows_of_a_lost_book_by_hand():
    """No row for a window whose end the book did not know; the series resumes at the next snapshot."""
    market = one_second_market("kraken:BTC-USD")
    t0 = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    epoch = t0.timestamp()
    book = BookIngestor(market, 10)

    def message(at: float, bid_qty: str, snapshot: bool = False) -> BookMessage:
        bids = [(Decimal(100), Decimal(bid_qty))]
        asks = [(Decimal(101), Decimal(1))] if snapshot else []
        return BookMessage(snapshot, bids, asks, t0 + timedelta(seconds=at), None, f"message at {at}")

    book.apply(message(0.2, "1", snapshot=True), 0.0)
    book.apply(message(0.6, "2"), 0.0)
    assert book.finalize_due(epoch + 1.0) == 1  # [0, 1)
    book.apply(message(1.3, "3"), 0.0)
    book.lost("test", 0.0)
    book.apply(message(1.8, "9"), 0.0)  # ignored: the book waits for a snapshot
    book.apply(message(2.2, "4", snapshot=True), 0.0)  # back only in the next window: [1, 2) unknown
    assert book.finalize_due(epoch + 3.0) == 1  # [2, 3)
    book.lost("test", 0.0)
    book.apply(message(3.6, "5", snapshot=True), 0.0)  # back within the same window: [3, 4) known at its end
    assert book.finalize_due(epoch + 4.0) == 1
    book.lost("test", 0.0)
    assert book.finalize_due(epoch + 5.0) == 0  # [4, 5) ended while lost: abandoned by the clock
    book.apply(message(5.5, "6", snapshot=True), 0.0)
    assert book.finalize_due(epoch + 6.0) == 1
    book.apply(message(5.9, "7"), 0.0)  # stamped in a stored window: counts at the open one's start
    assert book.finalize_due(epoch + 7.0) == 1
    rows = BookWindow.objects.filter(market=market).order_by("start")
    got = [(int(w.start.timestamp() - epoch), w.bid_qty, w.updates) for w in rows]
    assert got == [(0, 2, 2), (2, 4, 1), (3, 5, 1), (5, 6, 1), (6, 7, 1)]
    assert book.stats.ignored == 1

    # A restarted stream's book starts after the stored windows.
    again = BookIngestor(market, 10)
    again.apply(message(6.5, "8", snapshot=True), 0.0)
    assert again.windows.start == int(epoch) + 7
    market.refresh_from_db()
    assert market.book_updated_at == t0 + timedelta(seconds=5.9) and market.book_depth == 1


def test_health_admin_and_api_show_the_book():
    market = one_second_market("kraken:BTC-USD")
    Market.objects.filter(pk=market.pk).update(enabled=True)
    t0 = datetime.fromisoformat("2026-01-01T00:00:00.250+00:00")
    book = BookIngestor(market, 10)
    bids, asks = [(Decimal("236.47"), Decimal(2)), (Decimal("236.2"), Decimal(1))], [(Decimal("236.6"), Decimal(3))]
    book.apply(BookMessage(True, bids, asks, None, None, "snapshot"), 0.0, received=t0)  # no exchange time
    assert book.finalize_due(t0.timestamp() + 1) == 1
    book.lost("test", 0.0)
    book.resync_sent(0.0)

    lease = Lease(stream_key(market.name), 5)
    assert lease.acquire()
    try:
        streams = Client().get("/healthz").json()["components"]["streams"]
    finally:
        lease.release()
    assert streams["markets"]["kraken:BTC-USD"]["book"] == {
        "depth": 2,
        "updated_at": "2026-01-01T00:00:00.250000+00:00",
        "checksum_failures": 0,
        "resyncs": 1,
        "receive_stamped": 1,
    }

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com", "pw"))
    listing = admin.get("/admin/markets/market/").content.decode()
    assert "Book resyncs" in listing and "Book checksum failures" in listing and "Book receive-time stamps" in listing
    page = admin.get(f"/admin/markets/market/{market.pk}/change/").content.decode()
    assert "Order book" in page and "fresh snapshots requested" in page and "without an exchange time" in page

    with override_settings(API_ANONYMOUS_READ=True):
        detail = Client().get("/api/v1/markets/kraken:BTC-USD/").json()
        listed = Client().get("/api/v1/markets/").json()
    assert detail["book"] == {
        "bid": "236.47",
        "ask": "236.6",
        "spread": "0.13",
        "mid": "236.535",
        "updated": "2026-01-01T00:00:01Z",
    }
    assert "book" not in listed[0]  # the list stays one query


# --- live ----------------------------------------------------------------------------------
@pytest.fixture
def kraken(feed, fast, settings):
    with FakeKrakenBook(feed) as server:
        settings.KRAKEN_WS_URL = server.ws_url
        settings.KRAKEN_REST_URL = server.rest_url
        yield server


def test_kraken_book_survives_a_lost_update_and_a_cut_connection(kraken, feed, caplog):
    """Documented shapes, a real book's pace: a lost update is caught by the next update's checksum and the book
    fetched again within RESYNC_BOUND_S of that update; after a cut connection the next connection's snapshot
    resumes it; every stored window's top of book is the exchange's."""
    kraken.lose_state = 30  # the update to state 30 never arrives: the one after fails its checksum
    kraken.drop_at_state = 70
    market = one_second_market("kraken:BTC-USD")
    runner = StreamRunner(market)
    with caplog.at_level(logging.INFO, logger="markets"):
        run_until(runner, lambda: feed.latest().index >= 110, timeout=90)

    stats = runner.book.stats
    assert runner.malformed == 0
    assert stats.checksum_failures == 1 and stats.resyncs == 1 and runner.connects == 2
    snapshots = [e for e in kraken.events if e.what == "snapshot"]
    assert len(snapshots) == 3 and stats.receive_stamped == 3  # none has a timestamp: each stamped on receipt
    market.refresh_from_db()
    assert (market.book_checksum_failures, market.book_resyncs, market.book_depth) == (1, 1, 10)
    assert market.book_updated_at is not None
    mismatch = [r.getMessage() for r in caplog.records if "checksum mismatch" in r.getMessage()]
    assert len(mismatch) == 1 and "after the book update of BTC/USD at" in mismatch[0]

    # The book was subscribed after the instrument snapshot, and resynced by unsubscribe + subscribe.
    requests = [(t, m["method"], m["params"]["channel"]) for t, m in kraken.requests]
    assert [r[1:] for r in requests] == [
        ("subscribe", "instrument"),
        ("subscribe", "book"),
        ("unsubscribe", "book"),
        ("subscribe", "book"),
        ("subscribe", "instrument"),  # the second connection
        ("subscribe", "book"),
    ]
    assert kraken.requests[1][1]["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 10, "snapshot": True}
    events = kraken.events
    lost = next(i for i, e in enumerate(events) if e.what == "lost")
    failing = next(e for e in events[lost:] if e.what == "update")  # the first message after the lost one
    resnapshot = next(e for e in events[lost:] if e.what == "snapshot")
    assert failing.monotonic <= requests[2][0] <= resnapshot.monotonic
    assert resnapshot.monotonic - failing.monotonic < RESYNC_BOUND_S

    compared = check_windows(market, feed, disruptions(events, market.interval_s))
    assert compared >= 6
    assert BookWindow.objects.filter(market=market, updates__gt=0).count() >= compared - 1


def test_stream_command_reports_receive_time_stamps(kraken, feed, monkeypatch):
    """The summary counts the book messages stamped on receipt: here the one snapshot (it has no timestamp)."""
    market = one_second_market("kraken:BTC-USD")
    deadline = time.monotonic() + 60

    class Clock:  # the command's --for clock: its time is up once a window is stored
        @staticmethod
        def monotonic() -> float:
            done = BookWindow.objects.filter(market=market).exists() or time.monotonic() > deadline
            return math.inf if done else 0.0

    monkeypatch.setattr("pipeline.management.commands.stream.time", Clock)
    out = io.StringIO()
    call_command("stream", "--market", "kraken:BTC-USD", "--for", "60", stdout=out)
    summary = out.getvalue()
    assert re.search(r"book windows [1-9]\d*,", summary) and summary.rstrip().endswith("receive-time stamps 1")


@pytest.fixture
def coinbase(feed, fast, settings):
    with FakeCoinbaseBook(feed) as server:
        settings.COINBASE_WS_URL = server.url
        yield server


def l2_bad(updates: list[dict]) -> dict:
    return {"channel": "l2_data", "events": [{"type": "update", "product_id": "BTC-USD", "updates": updates}]}


def test_coinbase_book_resyncs_on_a_sequence_gap_and_bad_frames(coinbase, feed, caplog):
    """A frame lost (sequence gap) and four bad book frames: each logged, counted, the book fetched again; the
    stream goes on and every other window's top of book is the exchange's. Captured frames of a channel not
    consumed (ticker) are counted apart and cost nothing; a ticker frame without events is malformed."""
    at = "2026-01-01T00:00:00Z"
    coinbase.inject = {
        15: [l2_bad([{"side": "bid", "event_time": at, "price_level": "abc", "new_quantity": "1"}])],
        35: [l2_bad([{"side": "bid", "event_time": at, "price_level": "230.5", "new_quantity": "-1"}])],
        55: [l2_bad([{"side": "middle", "event_time": at, "price_level": "230.5", "new_quantity": "1"}])],
        75: [
            l2_bad([{"side": "bid", "event_time": at, "price_level": "999999.99", "new_quantity": "1"}]),
            {"channel": "ticker", "tickers": []},
        ],
    }
    coinbase.lose_state = 95
    coinbase.ticker = 5
    market = one_second_market("coinbase:BTC-USD")
    unused = prometheus.STREAM_UNUSED.labels(market.name, "ticker")
    counted = unused._value.get()
    runner = StreamRunner(market)
    with caplog.at_level(logging.WARNING, logger="markets"):
        run_until(runner, lambda: feed.latest().index >= 125, timeout=90)

    assert runner.malformed == 5 and runner.connects == 1
    assert runner.unused == 5 and unused._value.get() - counted == 5
    assert "ticker frame without events" in "\n".join(r.getMessage() for r in caplog.records)
    assert coinbase.trades_sent and runner.stats.stored  # the captured trades, between the book's frames
    assert runner.book.stats.resyncs == 5 and runner.book.stats.checksum_failures == 0
    market.refresh_from_db()
    assert (market.book_resyncs, market.book_checksum_failures, market.book_depth) == (5, 0, 20)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for problem in [
        "bad level price 'abc'",
        "negative qty '-1' at price '230.5'",
        "side must be bid or offer",
        "crossed book after it (best bid 999999.99 >= best ask",
        "book lost (sequence gap: expected",
    ]:
        assert problem in logged
    assert "malformed frame #4 ignored, book fetched again: level2 update of BTC-USD at" in logged
    levels2 = [(r["type"], r["channel"]) for _, r in coinbase.requests if r["channel"] == "level2"]
    assert levels2 == [("subscribe", "level2")] + [("unsubscribe", "level2"), ("subscribe", "level2")] * 5
    compared = check_windows(market, feed, disruptions(coinbase.events, market.interval_s))
    assert compared >= 5


def test_a_malformed_kraken_book_frame_costs_a_resync_not_the_stream(kraken, feed):
    """A book update with a level missing its qty: logged, counted, the book fetched again, the connection kept."""
    kraken.inject = {15: ['{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1}]}]}']}
    market = one_second_market("kraken:BTC-USD")
    runner = StreamRunner(market)
    run_until(runner, lambda: feed.latest().index >= 50, timeout=60)
    assert runner.malformed == 1 and runner.book.stats.resyncs == 1 and runner.connects == 1
    assert runner.book.stats.checksum_failures == 0
    assert check_windows(market, feed, disruptions(kraken.events, market.interval_s)) >= 2
