"""Every message shape the exchanges document (and the captured frames) through our parsers.

Kraken Spot WebSocket v2: status, heartbeat, pong, subscribe acks, trade
snapshot and updates, book snapshot and updates, instrument. Coinbase Advanced
Trade WebSocket: market_trades, level2 (l2_data) snapshot and updates,
heartbeats, subscriptions, and ticker (a channel not consumed). The shapes follow the exchanges' channel pages:
which fields a message has, which of them are optional (a Kraken book
snapshot has no timestamp, only its updates do), how values are written
(Kraken: JSON numbers; strings are taken too). Values come from the bundled
frames in data/sample/messages: captured sessions where they exist, else the
real checksum vector and the fixtures of documented shapes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from markets.book.orderbook import OrderBook
from markets.models import Market
from markets.names import get_or_create_market
from markets.streams.livebook import BookIngestor
from markets.streams.sources.base import (
    BookMessage,
    MalformedBook,
    MalformedFrame,
    SubscriptionRejected,
    Unused,
    load_frame,
)
from markets.streams.sources.coinbase import CoinbaseSource
from markets.streams.sources.kraken import KrakenSource
from testsupport.data import SAMPLE

MESSAGES = SAMPLE / "messages"
VECTOR = MESSAGES / "kraken_ws_v2_book_snapshot_checksum_vector.json"
TIME = "2023-10-06T17:35:55.440295Z"  # as in the fixtures


def kraken(symbol: str = "BTC/USD") -> KrakenSource:
    base, quote = symbol.split("/")
    return KrakenSource(Market(exchange="kraken", base=base, quote=quote, symbol=symbol))


def coinbase(product: str = "BTC-USD") -> CoinbaseSource:
    base, quote = product.split("-")
    return CoinbaseSource(Market(exchange="coinbase", base=base, quote=quote, symbol=product))


def fixture(name: str) -> dict:
    return load_frame((MESSAGES / name).read_text())


def capture(name: str) -> list[str]:
    """The exchange's frames of a captured session (the client's own subscribe request left out)."""
    return [line for line in (MESSAGES / name).read_text().splitlines() if '"type":"subscribe"' not in line]


def documented_snapshot() -> dict:
    """The real checksum vector as the book page documents a snapshot: symbol, bids, asks, checksum; no timestamp."""
    frame = load_frame(VECTOR.read_text())
    del frame["data"][0]["timestamp"]
    return frame


def as_strings(frame: dict) -> dict:
    """The same frame with every price and qty written as a JSON string."""
    for entry in frame["data"]:
        for side in ("bids", "asks"):
            entry[side] = [{"price": str(level["price"]), "qty": str(level["qty"])} for level in entry[side]]
    return frame


# --- Kraken v2: status, heartbeat, pong, acks -----------------------------------------------
def test_kraken_status_heartbeat_and_pong_are_control_frames():
    source = kraken()
    status = {
        "channel": "status",
        "type": "update",
        "data": [{"api_version": "v2", "connection_id": 12393906104898154338, "system": "online", "version": "2.0.4"}],
    }
    assert source.parse(load_frame(json.dumps(status))) is None
    assert source.parse(load_frame('{"channel":"heartbeat"}')) is None  # the channel name is all it carries
    assert source.parse(fixture("kraken_ws_v2_fixture_pong.json")) is None


def test_kraken_subscribe_acks():
    """One ack per symbol, with or without req_id (sent back only when the request had one) and warnings."""
    source = kraken()
    trade, instrument = source.subscribe_frames()
    ack = {"method": "subscribe", "success": True, "time_in": TIME, "time_out": TIME}
    trade_result = {"channel": "trade", "symbol": "BTC/USD", "snapshot": True}
    assert source.parse(ack | {"result": trade_result, "req_id": trade["req_id"]}) is True
    assert source.parse(ack | {"result": trade_result | {"warnings": ["an advisory"]}}) is True
    assert source.parse(ack | {"result": {"channel": "instrument", "snapshot": True}}) is None
    book = {"channel": "book", "depth": 10, "snapshot": True, "symbol": "BTC/USD"}
    assert source.parse(ack | {"result": book}) is None
    assert source.parse(fixture("kraken_ws_v2_fixture_subscribe_response.json")) is None  # a ticker ack
    assert source.parse({"method": "unsubscribe", "result": book} | ack) is None
    rejected = {
        "error": "Currency pair not supported BTC/USD",
        "method": "subscribe",
        "success": False,
        "symbol": "BTC/USD",
        "time_in": TIME,
        "time_out": TIME,
        "req_id": trade["req_id"],
    }
    with pytest.raises(SubscriptionRejected, match="rejected the trade subscribe for BTC/USD: Currency pair"):
        source.parse(rejected)
    assert source.parse(rejected | {"req_id": instrument["req_id"]}) is None  # the trades go on, without a book
    assert "rejected the instrument subscribe" in source.book_lost


# --- Kraken v2: trade -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["snapshot", "update"])
@pytest.mark.parametrize("strings", [False, True], ids=["numbers", "strings"])
def test_kraken_trade_snapshot_and_update(kind, strings):
    frame = fixture("kraken_ws_v2_fixture_trade_update.json") | {"type": kind}
    if strings:
        for item in frame["data"]:
            item["price"], item["qty"] = str(item["price"]), str(item["qty"])
    ticks = kraken().parse(frame)
    assert [(t.trade_id, t.ts.isoformat(), t.price, t.qty, t.side) for t in ticks] == [
        (10218208, "2023-10-06T17:35:55.440295+00:00", Decimal("105944.20"), Decimal("0.00027625"), "buy"),
        (10218209, "2023-10-06T17:35:56.123456+00:00", Decimal("105910.50"), Decimal("0.00012460"), "sell"),
    ]
    assert kraken("ETH/USD").parse(frame) == []  # another pair's trades


# --- Kraken v2: book ------------------------------------------------------------------------
def test_kraken_book_snapshot_without_timestamp_is_applied_at_its_receive_time(db):
    source = kraken()
    message = source.parse(documented_snapshot())
    assert isinstance(message, BookMessage) and message.snapshot and message.ts is None
    assert message.checksum == 3310070434 and message.frame == "book snapshot of BTC/USD"
    source.precision = (1, 8)
    book = BookIngestor(get_or_create_market("kraken:BTC-USD"), 10, source.book_checksum)
    received = datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    book.apply(message, 0.0, received)
    assert book.valid and book.stats.checksum_failures == 0
    assert book.stats.receive_stamped == 1 and book.last_ts == received
    assert book.windows.start == int(received.timestamp())


@pytest.mark.parametrize("strings", [False, True], ids=["numbers", "strings"])
@pytest.mark.parametrize("stamped", [False, True], ids=["documented", "with-timestamp"])
def test_kraken_book_snapshot(strings, stamped):
    frame = load_frame(VECTOR.read_text()) if stamped else documented_snapshot()
    if strings:
        frame = as_strings(frame)
    source = kraken()
    source.precision = (1, 8)
    message = source.parse(frame)
    assert message.snapshot and message.checksum == 3310070434 and len(message.bids) == len(message.asks) == 10
    assert message.bids[0] == (Decimal("45283.5"), Decimal("0.10000000"))
    assert message.ts == (datetime(2023, 10, 6, 17, 35, 55, 440295, tzinfo=UTC) if stamped else None)
    book = OrderBook(10)
    book.load(message.bids, message.asks)
    assert source.book_checksum(book) == message.checksum


@pytest.mark.parametrize("strings", [False, True], ids=["numbers", "strings"])
def test_kraken_book_update(strings):
    frame = fixture("kraken_ws_v2_fixture_book_update.json")
    if strings:
        frame = as_strings(frame)
    message = kraken().parse(frame)
    assert not message.snapshot and message.checksum == 2114181697
    assert message.bids == [(Decimal("105944.20"), Decimal("0.250"))] and message.asks == []
    assert message.ts == datetime(2023, 10, 6, 17, 35, 55, 440295, tzinfo=UTC)
    assert message.frame == f"book update of BTC/USD at {TIME}"
    del frame["data"][0]["checksum"]  # a message without one is verified by the next that has one
    assert kraken().parse(frame).checksum is None


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"timestamp": "yesterday"}, "bad timestamp"),
        ({"timestamp": "2023-10-06T17:35:55"}, "no timezone"),
        ({"checksum": -1}, "bad checksum -1"),
        ({"checksum": "3310070434"}, "bad checksum '3310070434'"),
        ({"checksum": 2**32}, "bad checksum 4294967296"),
        ({"bids": {}}, "bids is not a list"),
    ],
)
def test_kraken_book_fields_present_but_wrong_are_malformed(edit, problem):
    frame = documented_snapshot()
    frame["data"][0] |= edit
    with pytest.raises(MalformedBook, match=f"book snapshot of BTC/USD.*: .*{problem}"):
        kraken().parse(frame)


# --- Kraken v2: instrument ------------------------------------------------------------------
def test_kraken_instrument_snapshot_and_update():
    """data holds assets and pairs; the pair's precision (never assumed) comes from it, then the book is subscribed."""
    pair = {
        "symbol": "BTC/USD",
        "base": "BTC",
        "quote": "USD",
        "status": "online",
        "qty_precision": 8,
        "qty_increment": Decimal("0.00000001"),
        "price_precision": 1,
        "cost_precision": 5,
        "marginable": True,
        "has_index": True,
        "cost_min": Decimal("0.5"),
        "margin_initial": Decimal("0.2"),
        "position_limit_long": 250,
        "position_limit_short": 200,
        "tick_size": Decimal("0.1"),
        "price_increment": Decimal("0.1"),
        "qty_min": Decimal("0.0001"),
    }
    asset = {"id": "BTC", "status": "enabled", "precision": 10, "precision_display": 5, "borrowable": True}
    assets = [asset | {"collateral_value": Decimal("1.0"), "margin_rate": Decimal("0.01")}]
    source = kraken()
    source.subscribe_frames()
    snapshot = {"channel": "instrument", "type": "snapshot", "data": {"assets": assets, "pairs": [pair]}}
    assert source.parse(snapshot) is None and source.precision == (1, 8)
    (subscribe,) = source.outbox
    assert subscribe["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 10, "snapshot": True}
    update = {"channel": "instrument", "type": "update", "data": {"assets": [], "pairs": [pair | {"qty_precision": 6}]}}
    assert source.parse(update) is None and source.precision == (1, 6)


# --- Coinbase Advanced Trade ----------------------------------------------------------------
def test_coinbase_market_trades_captured_and_documented():
    """The captured snapshot and updates (ids as strings, the maker's side); the documented shape adds client_id."""
    source = coinbase()
    ticks = []
    for line in capture("coinbase_advanced_ws_market_trades.jsonl"):
        result = source.parse(load_frame(line))
        assert type(result) is list
        ticks += result
    expected = [
        t
        for line in capture("coinbase_advanced_ws_market_trades.jsonl")
        for e in json.loads(line)["events"]
        for t in e["trades"]
        if t["product_id"] == "BTC-USD"
    ]
    assert ticks and [t.trade_id for t in ticks] == [int(t["trade_id"]) for t in expected]
    documented = {
        "channel": "market_trades",
        "client_id": "",
        "timestamp": "2023-02-09T20:19:35.39625135Z",
        "sequence_num": 0,
        "events": [
            {
                "type": "snapshot",
                "trades": [
                    {
                        "trade_id": "000000000",
                        "product_id": "BTC-USD",
                        "price": "1260.01",
                        "size": "0.3",
                        "side": "BUY",
                        "time": "2019-08-14T20:42:27.265Z",
                    }
                ],
            }
        ],
    }
    (tick,) = coinbase().parse(load_frame(json.dumps(documented)))
    assert (tick.trade_id, tick.price, tick.qty, tick.side) == (0, Decimal("1260.01"), Decimal("0.3"), "sell")


def l2_frame(kind: str, updates: list[dict], timestamp: str | None = "2023-02-09T20:32:50.714964855Z") -> dict:
    frame = {"channel": "l2_data", "client_id": "", "sequence_num": 0}
    frame |= {"timestamp": timestamp} if timestamp is not None else {}
    return frame | {"events": [{"type": kind, "product_id": "BTC-USD", "updates": updates}]}


LEVELS = [
    {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73", "new_quantity": "0.06317902"},
    {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.3", "new_quantity": "0.02"},
    {"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.74", "new_quantity": "1.5"},
]


def test_coinbase_level2_snapshot_and_update():
    source = coinbase()
    snapshot = source.parse(load_frame(json.dumps(l2_frame("snapshot", LEVELS))))
    assert snapshot.snapshot and snapshot.checksum is None
    assert snapshot.bids == [(Decimal("21921.73"), Decimal("0.06317902")), (Decimal("21921.3"), Decimal("0.02"))]
    assert snapshot.asks == [(Decimal("21921.74"), Decimal("1.5"))]
    assert snapshot.ts == datetime(2023, 2, 9, 20, 32, 50, 714964, tzinfo=UTC)  # nanoseconds cut to micro
    gone = [{"side": "offer", "event_time": "2023-02-09T20:32:51Z", "price_level": "21921.74", "new_quantity": "0"}]
    update = source.parse(load_frame(json.dumps(l2_frame("update", gone, None) | {"sequence_num": 1})))
    assert not update.snapshot and update.asks == [(Decimal("21921.74"), Decimal(0))] and update.ts is None
    assert source.book_lost is None
    captured = [source.parse(load_frame(line)) for line in capture("coinbase_advanced_ws_level2.jsonl")]
    assert sum(isinstance(m, BookMessage) for m in captured) == 16  # of 30 frames, the rest are ETH-USD


def test_coinbase_heartbeats_captured_and_documented():
    """Counter as an integer (captured) or a string (the channel page): either is a control frame."""
    source = coinbase()
    for line in capture("coinbase_advanced_ws_heartbeats.jsonl"):
        assert source.parse(load_frame(line)) is None
    event = {"current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105", "heartbeat_counter": "3049"}
    documented = {"channel": "heartbeats", "client_id": "", "timestamp": "2023-06-23T20:31:26.122969572Z"}
    assert coinbase().parse(documented | {"sequence_num": 0, "events": [event]}) is None


def test_coinbase_subscriptions_captured():
    """Each frame lists everything subscribed; the one naming the product under market_trades makes the stream live."""
    lines = capture("coinbase_advanced_ws_subscriptions.jsonl")
    assert [coinbase().parse(load_frame(line)) for line in lines] == [True] * len(lines)
    assert [coinbase("SOL-USD").parse(load_frame(line)) for line in lines] == [None] * len(lines)
    heartbeats_only = {"channel": "subscriptions", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z"}
    heartbeats_only |= {"sequence_num": 1, "events": [{"subscriptions": {"heartbeats": ["heartbeats"]}}]}
    assert coinbase().parse(heartbeats_only) is None


def test_coinbase_channels_not_consumed_are_unused_not_malformed():
    """Captured ticker frames (a documented channel the source does not subscribe to) are well-formed: Unused,
    counted apart. Such a frame without events, or a channel no page documents, is malformed."""
    lines = capture("coinbase_advanced_ws_ticker.jsonl")
    assert len(lines) == 39
    assert {coinbase().parse(load_frame(line)) for line in lines} == {Unused("ticker")}
    with pytest.raises(MalformedFrame, match="ticker frame without events"):
        coinbase().parse({"channel": "ticker", "timestamp": "2026-08-09T21:05:48.229198328Z", "sequence_num": 6})
    with pytest.raises(MalformedFrame, match="unexpected frame"):
        coinbase().parse({"channel": "tickers", "events": []})
