"""Coinbase Advanced Trade `market_trades` through the same runner, from a real captured session."""

import contextlib
import json
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from markets.models import Market, Trade
from markets.names import get_or_create_market
from markets.streams.runner import StreamRunner
from markets.streams.sources.base import MalformedFrame, SubscriptionRejected
from markets.streams.sources.coinbase import CoinbaseSource
from testsupport.data import SAMPLE, read_rows
from testsupport.feed import run_until

pytestmark = pytest.mark.django_db(transaction=True)
CAPTURE = SAMPLE / "messages" / "coinbase_advanced_ws_market_trades.jsonl"
SUBSCRIPTIONS = SAMPLE / "messages" / "coinbase_advanced_ws_subscriptions.jsonl"


@pytest.fixture
def coinbase(settings):
    """Answers a subscribe with the recorded frames, as the exchange sent them."""
    frames = CAPTURE.read_text().splitlines()[1:]  # line 1 is the client's own request
    ack = SUBSCRIPTIONS.read_text().splitlines()[0]
    requests = []

    def handler(conn):
        with contextlib.suppress(ConnectionClosed):
            serve_requests(conn)

    def serve_requests(conn):
        for raw in conn:
            request = json.loads(raw)
            requests.append(request)
            if request.get("product_ids") == ["DOGE-EUR"]:
                conn.send(json.dumps({"type": "error", "message": "Failed to subscribe"}))
            elif request["channel"] == "market_trades":
                conn.send(ack)
                for frame in frames:
                    conn.send(frame)
                conn.send('{"channel":"unknown_channel","events":[]}')

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        settings.COINBASE_WS_URL = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        yield requests
        server.shutdown()


def test_recorded_session_stores_every_trade_once(coinbase):
    market = get_or_create_market("coinbase:ETH-USD")
    expected = {}
    for line in CAPTURE.read_text().splitlines()[1:]:
        for event in json.loads(line)["events"]:
            expected.update({int(t["trade_id"]): t for t in event["trades"] if t["product_id"] == "ETH-USD"})
    runner = StreamRunner(market)
    run_until(runner, lambda: Trade.objects.count() >= len(expected) and runner.malformed, timeout=20)

    assert coinbase[0] == {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "market_trades"}
    stored = {t.trade_id: t for t in Trade.objects.all()}
    assert sorted(stored) == sorted(expected)  # snapshot and updates overlap: each trade once
    assert runner.malformed == 1  # the unknown channel
    # Same values as the published trades file made from this capture (taker side = inverse of Coinbase's).
    published = {int(r["trade_id"]): r for r in read_rows(SAMPLE / "coinbase_ETHUSD_trades_2026-08-09.csv.gz")}
    for trade_id, trade in stored.items():
        row = published[trade_id]
        assert (str(trade.price.normalize()), trade.side) == (row["price"], row["side"])


def test_rejected_subscription_names_product(coinbase):
    market = Market.objects.create(exchange="coinbase", base="DOGE", quote="EUR", symbol="DOGE-EUR")
    with pytest.raises(SubscriptionRejected, match="DOGE-EUR"):
        StreamRunner(market).run()


@pytest.mark.parametrize(
    ("price", "size", "trade_id", "problem"),
    [
        ("1e400", "0.1", "1", "out of range"),
        ("Infinity", "0.1", "1", "out of range"),
        ("2500.1", "1e18", "1", "out of range"),
        ("2500.1", "0.1", str(2**63), "bigint"),
        ("NaN", "0.1", "1", "not decimal numbers"),
        ("2500.1", "0.1", "1.5", "not a whole number"),
        ("2500.1", "0.1", "1" * 5000, "not a whole number"),
    ],
)
def test_out_of_range_trades_are_malformed(price, size, trade_id, problem):
    """The limits of a trades file's rows (see test_replay): values the database cannot hold."""
    source = CoinbaseSource(Market(exchange="coinbase", base="ETH", quote="USD", symbol="ETH-USD"))
    trade = {"product_id": "ETH-USD", "trade_id": trade_id, "price": price, "size": size, "side": "BUY"}
    trade["time"] = "2026-08-09T12:00:00.123456Z"
    frame = {"channel": "market_trades", "events": [{"type": "update", "trades": [trade]}]}
    with pytest.raises(MalformedFrame, match=problem):
        source.parse(frame)
