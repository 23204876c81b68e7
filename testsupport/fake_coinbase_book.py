"""A local Coinbase Advanced Trade websocket: `market_trades` (a captured session), `heartbeats` and `level2`
from a real L2 book.

Frames are shaped like the captured session in data/sample/messages
(coinbase_advanced_ws_level2.jsonl, …_subscriptions.jsonl, …_heartbeats.jsonl)
and the channel documentation: channel, timestamp (nanoseconds, trailing zeros
dropped), sequence_num, events; a `subscriptions` frame after each request
listing everything subscribed (heartbeats as ["heartbeats"]); a heartbeat every
second with its counter and the server's current_time.
Trades: the captured `market_trades` session, replayed at its own pace from the
subscription on. The book is an L2Feed (real Bitstamp snapshots published one
every 50 to 200 ms): a level2 subscriber gets an `l2_data` snapshot event of the whole
book, then one update event per step with the levels that changed
(`new_quantity` the new size, "0" for a level gone). Every frame of a
connection, whatever its channel, carries the next `sequence_num`.

Knobs, naming feed states as in FakeKrakenBook: lose_state (the update frame
to the first state from this index on is not sent and its sequence number is
used up: a gap), inject (frames, as dicts, sent after the update to that state
with the next sequence numbers), ticker (how many of the captured `ticker` frames of the
product, coinbase_advanced_ws_ticker.jsonl, to send after the market_trades
subscription: a channel the client does not consume). `events` logs what was sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from testsupport.fake_kraken import iso
from testsupport.fake_kraken_book import SAMPLE, Event, L2Feed, Published

HEARTBEAT_S = 1.0
TRADES = SAMPLE / "messages" / "coinbase_advanced_ws_market_trades.jsonl"
TICKER = SAMPLE / "messages" / "coinbase_advanced_ws_ticker.jsonl"


class Connection:
    """One client connection: its sequence numbers and what it subscribed."""

    def __init__(self, conn: ServerConnection):
        self.conn = conn
        self.lock = threading.Lock()
        self.sequence = 0
        self.subscriptions: dict[str, list[str]] = {}
        self.level2: tuple[threading.Thread, threading.Event] | None = None

    def send(self, frame: dict, skip: bool = False) -> None:
        """Send with the next sequence number (skip: use the number up without sending: a lost frame)."""
        with self.lock:
            frame = {"channel": frame.pop("channel"), "timestamp": nanos(datetime.now(UTC)), **frame}
            frame["sequence_num"] = self.sequence
            self.sequence += 1
            if not skip:
                self.conn.send(json.dumps(frame))


def nanos(ts: datetime) -> str:
    """RFC 3339 with nanoseconds as Coinbase writes it (trailing zeros dropped): 2026-08-09T21:05:52.85643877Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + (f"{ts.microsecond:06d}000".rstrip("0") or "0") + "Z"


def level(side: str, price: Decimal, qty: Decimal, ts: datetime) -> dict:
    # Strings as Coinbase writes them; the file's own digits.
    return {"side": side, "event_time": iso(ts), "price_level": str(price), "new_quantity": str(qty)}


class FakeCoinbaseBook:
    def __init__(self, feed: L2Feed, product: str = "BTC-USD"):
        self.feed = feed
        self.product = product
        self.lose_state: int | None = None
        self.inject: dict[int, list[dict]] = {}
        self.ticker = 0
        self.updates_sent = 0
        self.trades_sent = 0
        self.connections = 0
        self.requests: list[tuple[float, dict]] = []  # (monotonic, request)
        self.events: list[Event] = []
        self.started = time.monotonic()

    def log(self, what: str, state: Published) -> None:
        self.events.append(Event(what, state.index, state.ts, time.monotonic(), datetime.now(UTC)))

    def handler(self, raw_conn: ServerConnection) -> None:
        self.connections += 1
        conn = Connection(raw_conn)
        stop = threading.Event()
        try:
            for raw in raw_conn:
                request = json.loads(raw)
                self.requests.append((time.monotonic(), request))
                self.request(conn, request, stop)
        except (ConnectionClosed, OSError):
            pass
        finally:
            stop.set()
            if conn.level2 is not None:
                conn.level2[1].set()

    def request(self, conn: Connection, request: dict, stop: threading.Event) -> None:
        kind, channel, products = request.get("type"), request.get("channel"), request.get("product_ids")
        if products != [self.product]:
            conn.conn.send(json.dumps({"type": "error", "message": "Failed to subscribe"}))
            return
        if kind == "subscribe" and channel not in conn.subscriptions:
            conn.subscriptions[channel] = ["heartbeats"] if channel == "heartbeats" else products
            if channel == "heartbeats":
                threading.Thread(target=self.heartbeats, args=(conn, stop), daemon=True).start()
            if channel == "level2":
                level2_stop = threading.Event()
                thread = threading.Thread(target=self.level2, args=(conn, level2_stop), daemon=True)
                conn.level2 = thread, level2_stop
            self.send_subscriptions(conn)
            if channel == "level2":
                conn.level2[0].start()  # the snapshot follows the subscriptions frame
            if channel == "market_trades":
                self.send_ticker(conn)
                threading.Thread(target=self.market_trades, args=(conn, stop), daemon=True).start()
        elif kind == "unsubscribe" and channel in conn.subscriptions:
            del conn.subscriptions[channel]
            if channel == "level2" and conn.level2 is not None:
                conn.level2[1].set()
                conn.level2[0].join()
                conn.level2 = None
            self.send_subscriptions(conn)

    def send_subscriptions(self, conn: Connection) -> None:
        conn.send({"channel": "subscriptions", "events": [{"subscriptions": dict(conn.subscriptions)}]})

    def send_ticker(self, conn: Connection) -> None:
        """The first `ticker` captured ticker frames of the product, as captured but for the connection's
        timestamp and sequence number."""
        frames = [json.loads(line) for line in TICKER.read_text().splitlines()]
        mine = [
            frame
            for frame in frames
            if "events" in frame and all(t["product_id"] == self.product for e in frame["events"] for t in e["tickers"])
        ]
        for frame in mine[: self.ticker]:
            conn.send({key: value for key, value in frame.items() if key not in {"timestamp", "sequence_num"}})

    def market_trades(self, conn: Connection, stop: threading.Event) -> None:
        """The captured session's market_trades frames (snapshot, then updates) at their own pace, the product's
        trades only, every time moved by the same amount so that the session starts now."""
        frames = [json.loads(line) for line in TRADES.read_text().splitlines()]
        frames = [frame for frame in frames if "events" in frame]  # not the client's own request
        first = datetime.fromisoformat(frames[0]["timestamp"])
        shift, started = datetime.now(UTC) - first, time.monotonic()
        with contextlib.suppress(ConnectionClosed, OSError):
            for frame in frames:
                due = (datetime.fromisoformat(frame["timestamp"]) - first).total_seconds()
                if stop.wait(max(0.0, due - (time.monotonic() - started))):
                    return
                events = []
                for event in frame["events"]:
                    trades = [
                        trade | {"time": nanos(datetime.fromisoformat(trade["time"]) + shift)}
                        for trade in event["trades"]
                        if trade["product_id"] == self.product
                    ]
                    if trades:
                        events.append(event | {"trades": trades})
                if events:
                    conn.send({"channel": "market_trades", "events": events})
                    self.trades_sent += sum(len(event["trades"]) for event in events)

    def heartbeats(self, conn: Connection, stop: threading.Event) -> None:
        counter = 0
        with contextlib.suppress(ConnectionClosed, OSError):
            while not stop.wait(HEARTBEAT_S):
                counter += 1
                now = datetime.now(UTC)
                # As captured: the server's clock, then its monotonic reading (Go's time format).
                clock = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond:06d}000 +0000 UTC"
                uptime = time.monotonic() - self.started
                event = {"current_time": f"{clock} m=+{uptime:.9f}", "heartbeat_counter": counter}
                conn.send({"channel": "heartbeats", "events": [event]})

    def l2_frame(self, kind: str, state: Published, bids: list, asks: list) -> dict:
        """An l2_data frame stamped with the state's time (when the exchange's book became it)."""
        updates = [level("bid", p, q, state.ts) for p, q in bids] + [level("offer", p, q, state.ts) for p, q in asks]
        event = {"type": kind, "product_id": self.product, "updates": updates}
        return {"channel": "l2_data", "timestamp": nanos(state.ts), "events": [event]}

    def level2(self, conn: Connection, stop: threading.Event) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            state = self.feed.latest()
            bids = sorted(state.bids.items(), reverse=True)
            conn.send(self.l2_frame("snapshot", state, bids, sorted(state.asks.items())))
            self.log("snapshot", state)
            previous, last = state, state.index
            while not stop.is_set():
                for state in self.feed.after(last):
                    last = state.index
                    bids = self.changes(previous.bids, state.bids)
                    asks = self.changes(previous.asks, state.asks)
                    previous = state
                    if not bids and not asks:
                        continue
                    lost = self.lose_state is not None and state.index >= self.lose_state
                    if lost:
                        self.lose_state = None
                    conn.send(self.l2_frame("update", state, bids, asks), skip=lost)
                    self.updates_sent += not lost
                    self.log("lost" if lost else "update", state)
                    for at in [at for at in self.inject if state.index >= at]:
                        for frame in self.inject.pop(at):
                            conn.send(dict(frame))
                        self.log("inject", state)

    @staticmethod
    def changes(old: dict, new: dict) -> list[tuple[Decimal, Decimal]]:
        gone = [(p, Decimal(0)) for p in old if p not in new]
        return gone + [(p, q) for p, q in new.items() if old.get(p) != q]

    def __enter__(self) -> FakeCoinbaseBook:
        self.server = serve(self.handler, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
