"""A local Kraken speaking WebSocket v2 (`trade`) and REST `Trades`, fed with real trades.

Messages have the documented shapes: a `status` update on connecting, one
subscribe ack per symbol, a `trade` snapshot (the latest 50 trades) then
updates, and a `heartbeat` about once a second while no update is sent.

The "exchange" publishes the rows of a real trades file one after another,
the same rows under each of its pairs (one clock for all).
Both endpoints only ever show what has been published so far, so a client that
disconnects misses trades that only REST can give back.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from websockets.sync.server import ServerConnection, serve

PAGE = 1000
HEARTBEAT_S = 1.0


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pong(ping: dict) -> str:
    """The documented answer to a ping: its req_id back, with the times it came in and went out."""
    now = iso(datetime.now(UTC))
    return json.dumps({"method": "pong", "req_id": ping.get("req_id"), "time_in": now, "time_out": now})


class FakeKraken:
    def __init__(
        self,
        rows: list[dict],
        published: int = 0,
        end_at: datetime | None = None,
        pairs: dict[str, str] | None = None,
    ):
        """rows: real trades (or none); their times are shifted so the last one is at end_at (default: 1 min ago).

        pairs: websocket symbol -> REST pair name of each pair served (default BTC/USDT only).
        """
        end = end_at or datetime.now(UTC) - timedelta(minutes=1)
        shift = end - datetime.fromisoformat(rows[-1]["ts"]) if rows else timedelta(0)
        self.rows = [{**r, "ts": datetime.fromisoformat(r["ts"]) + shift} for r in rows]
        self.pairs = pairs or {"BTC/USDT": "XBTUSDT"}
        self.published = published
        self.lock = threading.Lock()
        # Knobs the tests turn:
        self.chunk = 20  # trades per update frame
        self.drop_after = None  # update frames per connection before the server cuts it (None: never)
        self.publish_while_down = 0  # trades published while a client is disconnected
        self.rate_limited = 0  # next N REST calls answer "EGeneral:Too many requests"
        self.garbage = []  # raw frames sent once after the next subscribe ack
        self.live = False  # True: each trade is stamped with the time it is sent, as on a live feed
        self.late: dict[int, float] = {}  # live: row index -> seconds its stamp lags the time it is sent
        self.connections = 0
        self.rest_calls = 0
        self.streaming: Counter[str] = Counter()  # symbol -> connections streaming its trades now
        self.most_streaming: Counter[str] = Counter()  # symbol -> the most such connections at any one time
        self.last_update: dict[ServerConnection, float] = {}  # when a channel last sent (heartbeats fill silences)

    # --- websocket v2 ---------------------------------------------------------------------
    @staticmethod
    def trade_item(symbol: str, row: dict) -> str:
        # Prices and quantities go out as JSON numbers, digits exactly as in the file.
        return (
            f'{{"symbol":"{symbol}","side":"{row["side"]}","price":{row["price"]},"qty":{row["qty"]},'
            f'"ord_type":"limit","trade_id":{row["trade_id"]},"timestamp":"{iso(row["ts"])}"}}'
        )

    def trade_frame(self, symbol: str, kind: str, rows: list[dict]) -> str:
        items = ",".join(self.trade_item(symbol, r) for r in rows)
        return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'

    def ws_handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        conn.send(
            json.dumps(
                {
                    "channel": "status",
                    "type": "update",
                    "data": [{"api_version": "v2", "connection_id": 1, "system": "online", "version": "2.0.0"}],
                }
            )
        )
        try:
            for raw in conn:
                message = json.loads(raw)
                if message.get("method") == "ping":
                    conn.send(pong(message))
                elif message.get("method") == "subscribe":
                    self.subscribed(conn, message)
                    return
        except Exception:  # the client went away
            return

    def subscribed(self, conn: ServerConnection, message: dict) -> None:
        symbol = message["params"]["symbol"][0]
        now = iso(datetime.now(UTC))
        if message["params"]["channel"] != "trade" or symbol not in self.pairs:
            conn.send(
                json.dumps(
                    {
                        "error": f"Currency pair not supported {symbol}",
                        "method": "subscribe",
                        "success": False,
                        "symbol": symbol,
                        "time_in": now,
                        "time_out": now,
                        "req_id": message.get("req_id"),
                    }
                )
            )
            return
        result = {"channel": "trade", "symbol": symbol, "snapshot": True}
        ack = {"method": "subscribe", "result": result, "success": True, "time_in": now, "time_out": now}
        conn.send(json.dumps({**ack, "req_id": message.get("req_id")}))
        for raw in self.garbage:
            conn.send(raw)
        self.garbage = []
        with self.lock:
            self.streaming[symbol] += 1
            self.most_streaming[symbol] = max(self.most_streaming[symbol], self.streaming[symbol])
        try:
            self.stream(conn, symbol)
        finally:
            with self.lock:
                self.streaming[symbol] -= 1

    def stream(self, conn: ServerConnection, symbol: str) -> None:
        """Snapshot, then updates as trades are published, until the client goes or drop_after cuts it."""
        with self.lock:
            sent = self.published
        conn.send(self.trade_frame(symbol, "snapshot", self.rows[max(0, sent - 50) : sent]))
        frames = 0
        self.last_update[conn] = time.monotonic()
        while True:
            with self.lock:
                batch = self.rows[sent : sent + self.chunk]
                if self.live:
                    stamp = datetime.now(UTC)
                    for k, row in enumerate(batch, start=sent):
                        row["ts"] = stamp - timedelta(seconds=self.late.get(k, 0.0))
                sent += len(batch)
                self.published = max(self.published, sent)
            now = time.monotonic()
            if batch:
                conn.send(self.trade_frame(symbol, "update", batch))
                frames += 1
                self.last_update[conn] = now
            elif now - self.last_update[conn] >= HEARTBEAT_S:  # documented: about once a second, when quiet
                conn.send('{"channel":"heartbeat"}')
                self.last_update[conn] = now
            if self.drop_after is not None and frames >= self.drop_after:
                with self.lock:
                    self.published = min(len(self.rows), self.published + self.publish_while_down)
                conn.socket.shutdown(socket.SHUT_RDWR)  # abrupt: no close frame
                return
            time.sleep(0.02)

    # --- REST -----------------------------------------------------------------------------
    def trades_response(self, query: dict) -> str:
        self.rest_calls += 1
        if self.rate_limited:
            self.rate_limited -= 1
            return '{"error":["EGeneral:Too many requests"]}'
        pair = query.get("pair", [""])[0]
        if pair not in self.pairs.values():
            return '{"error":["EQuery:Unknown asset pair"]}'
        since = int(query.get("since", ["0"])[0])
        with self.lock:
            visible = self.rows[: self.published]
        page = [r for r in visible if ns(r["ts"]) >= since][:PAGE]
        # Rows as Kraken sends them: strings for price/volume, the time as a JSON number (seconds).
        rows = ",".join(
            f'["{r["price"]}","{r["qty"]}",{Decimal(ns(r["ts"])) / 10**9},"{r["side"][0]}","l","",{r["trade_id"]}]'
            for r in page
        )
        last = ns(page[-1]["ts"]) if page else since
        return f'{{"error":[],"result":{{"{pair}":[{rows}],"last":"{last}"}}}}'

    # --- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> FakeKraken:
        self.ws = serve(self.ws_handler, "127.0.0.1", 0)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                if url.path != "/0/public/Trades":
                    self.send_error(404)
                    return
                body = fake.trades_response(parse_qs(url.query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.ws.serve_forever, daemon=True).start()
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.ws_url = f"ws://127.0.0.1:{self.ws.socket.getsockname()[1]}/v2"
        self.rest_url = f"http://127.0.0.1:{self.http.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.ws.shutdown()
        self.http.shutdown()
        self.http.server_close()


def ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 10**9 + ts.microsecond * 1000
