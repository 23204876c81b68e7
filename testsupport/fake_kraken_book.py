"""A local Kraken whose order book is a real one: WebSocket v2 `trade`, `instrument` and `book`.

The exchange's book (L2Feed, "the truth") steps through the snapshots of a real
L2 file (the bundled Bitstamp BTC/USD sample, 20 levels per side), one every 50
to 200 ms (a real book's pace), each stamped with the time it is published. A
`book` subscriber gets a v2 snapshot of the top `depth` levels, then one update
per step that changed them: the new or changed levels, qty 0 for a level gone
from the book, and nothing for a level merely pushed out of scope (Kraken sends
no delete for those; the client truncates). Shapes as Kraken documents them:
the snapshot has symbol, bids, asks and checksum but no timestamp; an update
also has the timestamp; prices and quantities are JSON numbers, written at the
precision the `instrument` channel declares (price 2, qty 8 decimals). Every
message carries the CRC32 checksum of the book after it, computed here by
plain code written from Kraken's guide, independent of markets.book.orderbook.

Knobs, each naming a state of the feed (the file's states are published in
order, so a knob always hits the same real data): lose_state (the update to
the first state from this index on is not sent, while the exchange's book
moves on), drop_at_state (the connection is cut, with no close frame, right
after the update to that state), inject (raw frames sent after the update to
that state). Everything sent is logged in `events` (with the state it showed
and when it was sent), so that a test can tell where the disruptions were.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import random
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from testsupport.fake_kraken import FakeKraken, iso, pong

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
BITSTAMP_L2 = SAMPLE / "bitstamp_BTCUSD_book20_2015-05-01_0000-0030.csv.gz"
PRICE_PRECISION, QTY_PRECISION = 2, 8
CHECKSUM_LEVELS = 10


def read_l2_states(path: Path = BITSTAMP_L2) -> list[tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]]:
    """The file's snapshots in order, each as (bids, asks): price -> qty."""
    states: list = []
    last_ts = None
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["ts"] != last_ts:
                states.append(({}, {}))
                last_ts = row["ts"]
            states[-1][0 if row["side"] == "bid" else 1][Decimal(row["price"])] = Decimal(row["qty"])
    return states


def best(levels: dict[Decimal, Decimal], side: str, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
    """The best n levels of one side, best first."""
    return sorted(levels.items(), reverse=side == "bid")[:n]


def kraken_crc32(bids: list, asks: list, price_places: int, qty_places: int) -> int:
    """Kraken v2 book checksum, as its guide describes it.

    The 10 best asks from low to high, then the 10 best bids from high to low;
    for each level its price, then its qty, written with the pair's decimals,
    the "." taken out and the leading zeros dropped; all of it joined into one
    string, whose CRC32 is the checksum.
    """
    text = ""
    for price, qty in asks[:CHECKSUM_LEVELS] + bids[:CHECKSUM_LEVELS]:
        text += format(price, f".{price_places}f").replace(".", "").lstrip("0")
        text += format(qty, f".{qty_places}f").replace(".", "").lstrip("0")
    return zlib.crc32(text.encode())


@dataclass
class Event:
    """One book message of the stand-in (or a disruption), as a test reads it back."""

    what: str  # snapshot, update, lost, drop, inject
    index: int  # the feed state it showed
    ts: datetime  # that state's time
    monotonic: float  # when it was sent (time.monotonic())
    sent_at: datetime  # when it was sent, wall clock


@dataclass
class Published:
    index: int  # its position in the feed
    ts: datetime
    bids: dict[Decimal, Decimal]
    asks: dict[Decimal, Decimal]


class L2Feed:
    """The exchange's book over time: the file's states, one every `period` seconds (a (low, high) range: drawn
    per step from a seeded generator), each stamped when it is published."""

    def __init__(self, period: float | tuple[float, float] = (0.05, 0.2), path: Path = BITSTAMP_L2, seed: int = 1):
        self.states = read_l2_states(path)
        self.period = period if isinstance(period, tuple) else (period, period)
        self.random = random.Random(seed)
        self.published: list[Published] = []
        self.changed = threading.Condition()
        self.stopping = threading.Event()

    def start(self) -> L2Feed:
        self.publish()
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def publish(self) -> None:
        with self.changed:
            i = len(self.published) % len(self.states)
            bids, asks = self.states[i]
            self.published.append(Published(len(self.published), datetime.now(UTC), bids, asks))
            self.changed.notify_all()

    def _run(self) -> None:
        while not self.stopping.wait(self.random.uniform(*self.period)):
            self.publish()

    def after(self, index: int, timeout: float = 0.1) -> list[Published]:
        """The states published after index (waits up to timeout for one)."""
        with self.changed:
            if len(self.published) <= index + 1:
                self.changed.wait(timeout)
            return self.published[index + 1 :]

    def latest(self) -> Published:
        with self.changed:
            return self.published[-1]

    def truth_before(self, end: datetime) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """The exchange's top of book as of `end`: the last state published before it."""
        state = None
        for published in self.published:
            if published.ts >= end:
                break
            state = published
        if state is None:
            return None
        (bid, bid_qty), (ask, ask_qty) = best(state.bids, "bid", 1)[0], best(state.asks, "ask", 1)[0]
        return bid, bid_qty, ask, ask_qty


def level_json(price: Decimal, qty: Decimal) -> str:
    """A v2 level with JSON numbers written at the declared precision (digits exactly as Kraken sends them)."""
    return f'{{"price":{price:.{PRICE_PRECISION}f},"qty":{qty:.{QTY_PRECISION}f}}}'


def book_frame(symbol: str, kind: str, bids: list, asks: list, timestamp: str | None, book: tuple[list, list]) -> str:
    """A v2 book frame of these levels; its checksum is that of book, the top levels after it.

    timestamp None: none in the frame (as documented for a snapshot).
    """
    checksum = kraken_crc32(book[0], book[1], PRICE_PRECISION, QTY_PRECISION)
    stamp = f',"timestamp":"{timestamp}"' if timestamp is not None else ""
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{",".join(level_json(p, q) for p, q in bids)}],'
        f'"asks":[{",".join(level_json(p, q) for p, q in asks)}],'
        f'"checksum":{checksum}{stamp}}}]}}'
    )


def changes(old: list, new: list, book: dict) -> list[tuple[Decimal, Decimal]]:
    """The levels of one side's update: new or changed levels in scope, qty 0 for levels gone from the book."""
    before = dict(old)
    gone = [(p, Decimal(0)) for p in before if p not in book]
    return gone + [(p, q) for p, q in new if before.get(p) != q]


def instrument_snapshot(symbol: str) -> str:
    """A v2 instrument snapshot declaring the pair's precision (and another pair's)."""
    base, quote = symbol.split("/") if "/" in symbol else (symbol, "USD")
    assets = [{"id": a, "status": "enabled", "precision": 10, "precision_display": 5} for a in (base, quote)]
    pair = {
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "status": "online",
        "qty_precision": QTY_PRECISION,
        "qty_increment": 1e-8,
        "price_precision": PRICE_PRECISION,
        "cost_precision": 5,
        "marginable": False,
        "has_index": True,
        "cost_min": 0.5,
        "tick_size": 0.01,
        "price_increment": 0.01,
        "qty_min": 0.0001,
    }
    other = pair | {"symbol": f"ETH/{quote}", "base": "ETH", "price_precision": 1, "qty_precision": 6}
    data = {"assets": assets, "pairs": [other, pair]}
    return json.dumps({"channel": "instrument", "type": "snapshot", "data": data})


class FakeKrakenBook(FakeKraken):
    """FakeKraken (trades, REST) plus `instrument` and a live `book` made from an L2Feed."""

    def __init__(self, feed: L2Feed, rows: list[dict] | None = None, symbol: str = "BTC/USD", pair: str = "XBTUSD"):
        super().__init__(rows or [], pairs={symbol: pair}, published=len(rows or []))
        self.symbol = symbol
        self.feed = feed
        for bids, asks in feed.states:  # the declared precision must hold every value exactly
            for value, places in [(p, PRICE_PRECISION) for p in [*bids, *asks]] + [
                (q, QTY_PRECISION) for q in [*bids.values(), *asks.values()]
            ]:
                assert value == round(value, places), f"{value} has more than {places} decimals"
        # Knobs the tests turn (feed state indices; each acts once):
        self.lose_state: int | None = None  # the update to the first state from this one on is not sent
        self.drop_at_state: int | None = None  # cut the connection right after the update to this state
        self.inject: dict[int, list[str]] = {}  # raw frames sent right after the update to this state
        self.updates_sent = 0
        self.events: list[Event] = []
        self.requests: list[tuple[float, dict]] = []  # (monotonic, message) of book and instrument requests

    def log(self, what: str, state: Published) -> None:
        self.events.append(Event(what, state.index, state.ts, time.monotonic(), datetime.now(UTC)))

    # --- websocket ------------------------------------------------------------------------
    def ws_handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        status = {"api_version": "v2", "connection_id": self.connections, "system": "online", "version": "2.0.0"}
        conn.send(json.dumps({"channel": "status", "type": "update", "data": [status]}))
        book: tuple[threading.Thread, threading.Event] | None = None
        try:
            for raw in conn:
                message = json.loads(raw)
                method, params = message.get("method"), message.get("params") or {}
                channel = params.get("channel")
                if method == "ping":
                    conn.send(pong(message))
                elif channel == "trade" and method == "subscribe":
                    threading.Thread(target=self._trades, args=(conn, message), daemon=True).start()
                elif channel == "instrument" and method == "subscribe":
                    self.requests.append((time.monotonic(), message))
                    self.ack(conn, message, {"channel": "instrument", "snapshot": True})
                    conn.send(instrument_snapshot(self.symbol))
                elif channel == "book" and method == "subscribe":
                    self.requests.append((time.monotonic(), message))
                    error = self.book_error(params, book is not None)
                    if error:
                        self.ack(conn, message, None, error)
                        continue
                    result = {"channel": "book", "depth": params["depth"], "snapshot": True, "symbol": self.symbol}
                    self.ack(conn, message, result)
                    stop = threading.Event()
                    thread = threading.Thread(target=self._book, args=(conn, params["depth"], stop), daemon=True)
                    thread.start()
                    book = thread, stop
                elif channel == "book" and method == "unsubscribe":
                    self.requests.append((time.monotonic(), message))
                    if book is None:
                        self.ack(conn, message, None, "Subscription Not Found")
                        continue
                    book[1].set()
                    book[0].join()
                    book = None
                    self.ack(conn, message, {"channel": "book", "symbol": self.symbol, "depth": params["depth"]})
        except (ConnectionClosed, OSError):
            pass
        finally:
            if book is not None:
                book[1].set()

    def ack(self, conn: ServerConnection, message: dict, result: dict | None, error: str | None = None) -> None:
        now = iso(datetime.now(UTC))
        ack = {"method": message["method"], "success": error is None, "time_in": now, "time_out": now}
        ack |= {"result": result} if error is None else {"error": error, "symbol": self.symbol}
        conn.send(json.dumps(ack | {"req_id": message.get("req_id")}))

    def book_error(self, params: dict, subscribed: bool) -> str | None:
        if params.get("symbol") != [self.symbol]:
            return f"Currency pair not supported {params.get('symbol')}"
        if params.get("depth") not in {10, 25, 100, 500, 1000}:
            return f"Invalid depth {params.get('depth')}"
        return "Already subscribed" if subscribed else None

    def _trades(self, conn: ServerConnection, message: dict) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            self.subscribed(conn, message)

    # --- the book -------------------------------------------------------------------------
    def _book(self, conn: ServerConnection, depth: int, stop: threading.Event) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            self._send_book(conn, depth, stop)

    def _send_book(self, conn: ServerConnection, depth: int, stop: threading.Event) -> None:
        state = self.feed.latest()
        view = best(state.bids, "bid", depth), best(state.asks, "ask", depth)
        conn.send(book_frame(self.symbol, "snapshot", *view, None, view))
        self.log("snapshot", state)
        last = state.index
        while not stop.is_set():
            for state in self.feed.after(last):
                last = state.index
                new = best(state.bids, "bid", depth), best(state.asks, "ask", depth)
                bids = changes(view[0], new[0], state.bids)
                asks = changes(view[1], new[1], state.asks)
                view = new
                if not bids and not asks:
                    continue
                if self.lose_state is not None and state.index >= self.lose_state:
                    self.lose_state = None
                    self.log("lost", state)
                    continue
                conn.send(book_frame(self.symbol, "update", bids, asks, iso(state.ts), view))
                self.last_update[conn] = time.monotonic()
                self.updates_sent += 1
                self.log("update", state)
                for at in [at for at in self.inject if state.index >= at]:
                    for raw in self.inject.pop(at):
                        conn.send(raw)
                    self.log("inject", state)
                if self.drop_at_state is not None and state.index >= self.drop_at_state:
                    self.drop_at_state = None
                    self.log("drop", state)
                    conn.socket.shutdown(socket.SHUT_RDWR)  # abrupt: no close frame
                    return


def book_loop(symbol: str, depth: int, timestamp: str, path: Path = BITSTAMP_L2) -> tuple[str, list[str]]:
    """v2 frames of the file's book: the snapshot of its first state (no timestamp, as documented), then the updates
    through every state and back to the first, so that the updates can be sent round and round (the benchmark's
    busy book)."""
    states = read_l2_states(path)
    views = [(best(bids, "bid", depth), best(asks, "ask", depth)) for bids, asks in states]
    snapshot = book_frame(symbol, "snapshot", *views[0], None, views[0])
    updates = []
    for i in range(1, len(states) + 1):
        (old, new), (bids, asks) = (views[i - 1], views[i % len(states)]), states[i % len(states)]
        changed = changes(old[0], new[0], bids), changes(old[1], new[1], asks)
        if changed[0] or changed[1]:
            updates.append(book_frame(symbol, "update", *changed, timestamp, new))
    return snapshot, updates
