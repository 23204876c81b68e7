"""Property-based fuzzing (Hypothesis) of the REST API and the websocket protocol against the real app.

The app runs under uvicorn in a process of its own (so its memory is its own), on
the test database and Redis, with a replayed market and a served model. Hypothesis
sends random paths under /api/v1/, query parameters, methods, headers and bodies,
then random websocket sessions: handshakes with or without tokens and origins,
JSON-ish and raw frames of any size, nesting and unicode, wrong types, binary and
fragmented frames, control pings, auth sequences with valid, invalid, expired and
revoked tokens. Properties: no 5xx and no traceback in the server's log; every
websocket reply is one JSON object of the protocol, and a connection only ever
ends with 1000, 1009 or 4401 (never 1011, never without a close frame); at the end
the server holds no open connection, and its resident memory grew by less than
RSS_BOUND over the run. Derandomized (the same examples every run) and bounded in
count: the whole test takes well under a minute.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import time
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import connect

from apitokens.models import ApiToken
from modeling import registry
from pipeline.entry import replay
from testsupport import wait_until

from .conftest import MARKET, AppProcess, api_user, train_model

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

# FUZZ_SCALE=N runs N times the examples, new random ones each run (exploring locally; CI keeps the fixed set).
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
REST_EXAMPLES = 300 * SCALE
WS_EXAMPLES = 150 * SCALE
RSS_BOUND = 24 * 2**20  # bytes the server's resident memory may grow by over the fuzzing (after a warm-up)
FUZZ = settings(
    max_examples=REST_EXAMPLES,
    derandomize=SCALE == 1,  # the same examples on every run (CI included): a failure is reproducible
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
REPLIES = {"error", "pong", "subscribed", "unsubscribed", "auth"}
CLOSING_ERRORS = ("message too big", "invalid token", "token expired", "token revoked", "user inactive")


# --- strategies -----------------------------------------------------------------------------------------------
# `known` holds what a well-behaved client would send (a market, a model id, keys, a real cursor and time): each
# strategy mixes it with wrong, odd and hostile values, so that validation and the handlers behind it both run.

WEIRD = [
    "",
    ".",
    "..",
    "%2e%2e",
    "%00",
    "%ff",
    "%c0%af",
    "%zz",
    "%",
    "\x00",
    "é",
    "🦄",
    "\u202e",
    "\ud800",
    "KRAKEN:eth-usd",
    "kraken:ETH-USD:extra",
    "gemini:ETH-USD",
    ":",
    "a:b-c",
    "-1",
    "0",
    "99999999999999999999999",
    "1e400",
    "NaN",
    "latest",
    "x" * 3000,
]


def text(max_size: int) -> st.SearchStrategy[str]:
    """Any text that can be sent (UTF-8 has no lone surrogates; a JSON escape like \\ud800 still carries one)."""
    return st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=max_size)


def oneof_weighted(*weighted: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    return st.one_of(*(strategy for weight, strategy in weighted for _ in range(weight)))


weird_segment = st.one_of(st.sampled_from(WEIRD), text(30), st.integers(-(2**70), 2**70).map(str))
TEMPLATES = [
    ("markets/", ()),
    ("markets/{}/", ("market",)),
    ("markets/{}/candles/", ("market",)),
    ("markets/{}/predictions/", ("market",)),
    ("markets/{}/predictions/latest/", ("market",)),
    ("markets/{}/metrics/", ("market",)),
    ("models/", ()),
    ("models/{}/", ("model",)),
    ("{}/", ("any",)),
    ("markets/{}/{}/", ("market", "any")),
]


@st.composite
def api_paths(draw, known: dict) -> str:
    template, slots = draw(st.sampled_from(TEMPLATES))
    fill = []
    for slot in slots:
        value = draw(oneof_weighted((3, st.just(known.get(slot, "x"))), (2, weird_segment)))
        raw = draw(st.booleans())  # as written (the WEIRD ones carry their own escapes), or percent-encoded
        if not (raw and value.isascii() and value.isprintable() and "?" not in value and "#" not in value):
            value = quote(value.encode("utf-8", "surrogatepass"), safe=":")
        fill.append(value.replace("/", "%2F"))
    return "/api/v1/" + template.format(*fill)


PARAMS = ["start", "end", "limit", "cursor", "interval", "market", "format"]
ODD_VALUES = [
    "",
    "2021-07-01",
    "1e400",
    "-1",
    "0",
    "1001",
    "99999999999999999999",
    "7s",
    "0s",
    "10000000d",
    "api",
    "json",
    "openapi",
    "cD0%00",
    "cD0yMDAwLTAxLTAx",
    "\x00",
]


@st.composite
def param_values(draw, known: dict) -> str:
    good = st.sampled_from([known["start"], known["end"], known["cursor"], known["market"], "5", "1m", "10s"])
    mutated_cursor = st.tuples(st.integers(0, len(known["cursor"])), text(3)).map(
        lambda cut: known["cursor"][: cut[0]] + cut[1] + known["cursor"][cut[0] + 1 :]
    )
    return draw(
        oneof_weighted(
            (4, good),
            (2, mutated_cursor),
            (2, st.sampled_from(ODD_VALUES)),
            (1, text(40)),
            (1, st.integers().map(str)),
            (1, st.binary(max_size=20).map(lambda b: b.decode("latin-1"))),
        )
    )


@st.composite
def queries(draw, known: dict) -> str:
    if draw(st.integers(0, 9)) == 0:  # malformed by hand: stray %, & and =
        return draw(st.text(alphabet="%&=;+az019", max_size=30))
    names = oneof_weighted((4, st.sampled_from(PARAMS)), (1, text(10)))
    return urlencode(draw(st.lists(st.tuples(names, param_values(known)), max_size=4)))


# What HTTP allows in a header value (no control characters, no surrounding space): the client sends nothing else.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
AUTH = ["none", "none", "valid", "valid", "valid", "expired", "revoked", "invalid", "garbage", "bearer", "bare", "two"]
ACCEPT = ["application/json", "text/html", "*/*", "application/vnd.oai.openapi", "image/png", "x/y;q=z"]


@st.composite
def request_headers(draw, known: dict) -> dict:
    keys, headers = known["keys"], {}
    auth = draw(st.sampled_from(AUTH))
    if auth in keys:
        headers["Authorization"] = f"Token {keys[auth]}"
    elif auth == "invalid":
        headers["Authorization"] = "Token cp_" + draw(header_text.filter(lambda t: " " not in t))
    elif auth == "garbage":
        headers["Authorization"] = draw(header_text)
    elif auth == "bearer":
        headers["Authorization"] = f"Bearer {keys['valid']}"
    elif auth == "bare":
        headers["Authorization"] = "Token"
    elif auth == "two":
        headers["Authorization"] = f"Token {keys['valid']} extra"
    if draw(st.integers(0, 3)) == 0:
        headers["Accept"] = draw(st.sampled_from(ACCEPT) | header_text)
    for name in draw(st.lists(st.sampled_from(["Cookie", "X-Forwarded-Proto", "Origin", "Content-Type"]), max_size=2)):
        headers[name] = draw(header_text)
    return headers


methods = st.sampled_from(["GET"] * 6 + ["HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "FOO"])
bodies = st.one_of(st.none(), st.binary(max_size=200), text(200).map(str.encode))

# Websocket frames: protocol-shaped objects with wrong types mixed in, and anything else.
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.sampled_from(WEIRD)
)  # st.text: lone surrogates too, which JSON escapes
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def dumps(value, ascii_only: bool) -> str:
    """JSON as sent: raw UTF-8 where it can be encoded, \\u escapes otherwise (or when asked)."""
    raw = json.dumps(value, ensure_ascii=False)
    try:
        raw.encode()
    except UnicodeEncodeError:
        ascii_only = True
    return json.dumps(value) if ascii_only else raw


@st.composite
def ws_frames(draw, known: dict):
    kind = draw(st.integers(0, 11))
    if kind <= 4:  # a message of the protocol, values right or wrong
        actions = st.sampled_from(["subscribe", "subscribe", "unsubscribe", "ping", "auth", "dance", None])
        message = {"action": draw(oneof_weighted((4, actions), (1, json_values)))}
        if draw(st.integers(0, 3)) > 0:
            channels = st.sampled_from(["predictions", "candles", "trades"])
            message["channel"] = draw(oneof_weighted((4, channels), (1, json_values)))
        if draw(st.integers(0, 3)) > 0:
            markets = st.sampled_from([known["market"], "kraken:BTC-USD", "ETHUSD", "\ud800:x-y"])
            message["market"] = draw(oneof_weighted((4, markets), (1, json_values)))
        if message["action"] == "auth" or draw(st.integers(0, 4)) == 0:
            tokens = st.sampled_from([*known["keys"].values(), "", "cp_nope"])
            message["token"] = draw(oneof_weighted((4, tokens), (1, json_values)))
        return ("text", dumps(message, ascii_only=draw(st.booleans())))
    if kind <= 6:
        return ("text", dumps(draw(json_values), ascii_only=draw(st.booleans())))
    if kind == 7:
        return ("text", draw(text(200)))
    if kind == 8:
        return ("bytes", draw(st.binary(max_size=200)))
    if kind == 9:  # around and far above WS_MAX_MESSAGE_BYTES, or nested deep
        size = draw(st.sampled_from([4095, 4096, 4097, 20_000, 300_000]))
        deep = draw(st.booleans())
        return ("text", ("[" * (size // 2) + "]" * (size // 2)) if deep else '{"action": "ping", "x": "' + "é" * size)
    if kind == 10:  # one message in fragments
        whole = json.dumps({"action": "ping", "pad": draw(text(50))}, ensure_ascii=False)
        cut = draw(st.integers(0, len(whole)))
        return ("fragments", [whole[:cut], whole[cut:]])
    return ("control-ping", draw(st.binary(max_size=125)))


@st.composite
def ws_sessions(draw, known: dict):
    keys = known["keys"]
    token = draw(st.sampled_from([None, None, "valid", "expired", "revoked", "invalid", "garbage"]))
    query = ""
    if token in keys:
        query = "?token=" + quote(keys[token])
    elif token == "invalid":
        query = "?token=cp_nope"
    elif token == "garbage":
        query = "?" + draw(queries(known))
    origin = draw(st.sampled_from([None, "http://127.0.0.1", "http://evil.example", "null"]))
    frames = draw(st.lists(ws_frames(known), min_size=1, max_size=6))
    return query, origin, token, frames


# --- the properties -----------------------------------------------------------------------------------------


def check_reply(raw) -> dict:
    assert isinstance(raw, str), f"a binary reply: {raw!r}"
    reply = json.loads(raw)
    assert isinstance(reply, dict) and reply.get("type") in REPLIES, reply
    return reply


def expect_close(ws, codes: set[int]) -> None:
    try:
        extra = ws.recv(timeout=5)
        raise AssertionError(f"expected a close, got {extra!r}")
    except ConnectionClosedError as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        assert closed.rcvd.code in codes, closed.rcvd
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code in codes, closed.rcvd


def ws_session(app: AppProcess, query: str, origin: str | None, token: str | None, frames: list) -> None:
    url = f"ws://127.0.0.1:{app.port}/ws/v1/stream/{query}"
    with connect(url, origin=origin, open_timeout=10, close_timeout=5, max_size=None) as ws:
        if token in ("expired", "revoked", "invalid"):
            assert check_reply(ws.recv(timeout=5))["type"] == "error"
            expect_close(ws, {4401})
            return
        for kind, payload in frames:
            if kind == "control-ping":
                assert ws.ping(payload).wait(5), "no pong to a control ping"
                continue
            ws.send(payload)
            reply = check_reply(ws.recv(timeout=5))
            if reply["type"] == "error" and reply["error"].startswith(CLOSING_ERRORS):
                expect_close(ws, {1009, 4401})
                return
        ws.send(json.dumps({"action": "ping"}))
        assert check_reply(ws.recv(timeout=5)) == {"type": "pong"}
    assert ws.close_code == 1000  # the server answered the client's close


@pytest.mark.timeout(120 * SCALE)
def test_fuzz_rest_and_websocket_against_uvicorn(market, parts, tmp_path, django_capture_on_commit_callbacks, caplog):
    caplog.set_level(logging.WARNING, logger="httpx")  # not a line per request
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        replay(parts[0], market)
    model = train_model(market)
    registry.promote(model, reason="fuzz")
    user, valid = api_user()
    expired = ApiToken.objects.issue(user, "expired", timezone.now() + timedelta(seconds=1))
    revoked = ApiToken.objects.issue(user, "revoked")
    revoked.revoke()
    keys = {"valid": valid.key, "expired": expired.key, "revoked": revoked.key}
    app = AppProcess(tmp_path / "uvicorn.log")
    seen: dict[int, int] = {}  # responses by status
    try:
        with httpx.Client(timeout=30) as client:

            def request(method: str, path: str, query: str, headers: dict, body: bytes | None) -> httpx.Response:
                url = app.url(path) + (f"?{query}" if query else "")
                response = client.request(method, url, headers=headers, content=body)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, (method, url, headers, response.status_code, response.text[:500])
                if method == "HEAD":
                    assert response.content == b""
                return response

            # Warm-up: every code path once (imports, templates, schema generation), then the memory baseline.
            auth = {"Authorization": f"Token {keys['valid']}"}
            for path in ["/api/v1/markets/", f"/api/v1/markets/{MARKET}/predictions/latest/", "/api/schema/"]:
                for accept in ["application/json", "text/html"]:
                    request("GET", path, "", {**auth, "Accept": accept}, None)
            request("GET", "/api/docs/", "", auth, None)
            page = request("GET", f"/api/v1/markets/{MARKET}/candles/", "limit=2", auth, None).json()
            ws_session(app, "", None, None, [("text", '{"action": "subscribe"}'), ("bytes", b"\x00")])
            known = {
                "keys": keys,
                "market": MARKET,
                "model": str(model.pk),
                "cursor": parse_qs(urlsplit(page["next"]).query)["cursor"][0],  # a real one, to be mutated
                "start": page["results"][0]["start"],
                "end": page["results"][-1]["start"],
            }
            wait_until(lambda: timezone.now() >= expired.expires, 5, "the expired token's expiry")
            baseline = app.rss()

            @FUZZ
            @given(
                method=methods,
                path=api_paths(known),
                query=queries(known),
                headers=request_headers(known),
                body=bodies,
            )
            def fuzz_rest(method, path, query, headers, body):
                request(method, path, query, headers, body)

            @settings(FUZZ, max_examples=WS_EXAMPLES)
            @given(session=ws_sessions(known))
            def fuzz_websocket(session):
                ws_session(app, *session)

            fuzz_rest()
            after_rest = app.rss()
            fuzz_websocket()
        grown = app.rss() - baseline
        rest_grown = after_rest - baseline
        assert grown < RSS_BOUND, f"server RSS grew by {grown / 2**20:.1f} MiB (REST: {rest_grown / 2**20:.1f})"
        deadline = time.monotonic() + 5
        while app.open_connections() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app.open_connections() == [], "the server kept connections open"
        assert app.process.poll() is None, "the server died"
    finally:
        app.stop()
    log = app.log.read_text()
    assert "Traceback" not in log and "1011" not in log, log[-5000:]
    print(f"fuzzed in {time.monotonic() - started:.1f}s; server RSS grew by {grown / 2**20:.1f} MiB; statuses {seen}")
    assert django_settings.WS_MAX_MESSAGE_BYTES == 4096  # the sizes above straddle it


@pytest.mark.system
def test_clients_that_vanish_or_send_too_many_fields_are_one_line_in_the_log(market, tmp_path):
    """Ordinary client behaviour is not a server error: no ERROR, no traceback in uvicorn's log."""
    app = AppProcess(tmp_path / "uvicorn.log")
    try:
        query = "&".join(f"f{i}=1" for i in range(1001))  # above Django's DATA_UPLOAD_MAX_NUMBER_FIELDS
        assert httpx.get(app.url(f"/api/v1/markets/?{query}")).status_code == 400
        for _ in range(10):  # clients reset their connection while the server answers their frames
            with connect(app.url("/ws/v1/stream/").replace("http", "ws", 1)) as ws:
                for _ in range(200):
                    ws.send(json.dumps({"action": "ping"}))
                ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws.socket.close()  # a TCP reset, no close frame
        deadline = time.monotonic() + 30
        while app.open_connections():
            assert time.monotonic() < deadline, "connections left open"
            time.sleep(0.1)
    finally:
        app.stop()
    log = app.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log
    [line] = [line for line in log.splitlines() if "TooManyFieldsSent" in line or "number of GET/POST" in line]
    assert " WARNING django.security.TooManyFieldsSent: " in line
