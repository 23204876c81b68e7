"""Run one market's live source: connect, fill gaps from history, ingest, reconnect with backoff."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from core import prometheus
from markets.models import Market, Trade
from markets.streams.grace import Grace
from markets.streams.livebook import BookIngestor
from markets.streams.sources import source_for
from markets.streams.sources.base import (
    BookMessage,
    HistoryError,
    MalformedBook,
    MalformedFrame,
    Source,
    SubscriptionRejected,
    Unused,
    backoff_delay,
    load_frame,
    to_ns,
)
from markets.trades.ingest import Ingestor, IngestStats

log = logging.getLogger(__name__)

State = Market.StreamState
RECV_TIMEOUT_S = 0.5
# Network trouble of either the websocket or the history API: retried with backoff.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    ConnectionClosed,
    InvalidHandshake,
    InvalidURI,
    httpx.HTTPError,
    HistoryError,
)


class StreamStopped(Exception):
    """The stream was asked to stop (deadline, shutdown or a lost lease)."""


def set_state(market: Market, state: str, detail: str = "") -> None:
    market.stream_state, market.stream_detail = state, detail[:500]
    Market.objects.filter(pk=market.pk).update(
        stream_state=state, stream_detail=detail[:500], stream_updated_at=timezone.now()
    )


def history_start(market: Market) -> datetime:
    """Where a gap fill starts: the newest stored trade, else BACKFILL_HOURS ago (first start)."""
    newest = Trade.objects.filter(market=market).order_by("-ts").values_list("ts", flat=True).first()
    return newest or datetime.now(UTC) - timedelta(hours=settings.BACKFILL_HOURS)


class StreamRunner:
    """Keeps one market's trades, and its order book when the source has one, flowing into the database.

    keep_going is called about every half second; returning False stops the
    runner (used for --for, worker shutdown and Redis lease renewal).

    Each frame is parsed by the source and dispatched by what it holds: trades
    to the Ingestor (one transaction per frame), a BookMessage to the
    BookIngestor (in memory: book, checksum, windows). On the clock, the
    Ingestor finalizes candles and, in the same transaction, the book's
    windows; then it wakes the step. A book that must be fetched again
    (BookIngestor.resync_at) gets the source's resync frames.
    """

    def __init__(
        self,
        market: Market,
        source: Source | None = None,
        keep_going: Callable[[], bool] | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self.market = market
        self.on_commit = on_commit  # after each commit that finalized candles (see Ingestor)
        self.source = source or source_for(market)
        self.keep_going = keep_going or (lambda: True)
        self.stopping = threading.Event()
        self.malformed = 0
        self.unused = 0  # well-formed frames of channels not consumed (see Unused)
        self.unused_channels: set[str] = set()
        self.connects = 0
        self.stats = IngestStats()  # over all connections
        self.book: BookIngestor | None = None  # the live book, over all connections (created by run())

    def run(self) -> None:
        """Until stopped; SubscriptionRejected propagates (retrying cannot fix it)."""
        if self.book is None and self.source.book_depth:
            self.book = BookIngestor(self.market, self.source.book_depth, self.source.book_checksum)
        attempt = 0
        try:
            while True:
                self._check()
                set_state(self.market, State.CONNECTING if attempt == 0 else State.RECONNECTING, self.source.url)
                try:
                    with connect(self.source.url, open_timeout=10, close_timeout=2, max_size=2**23) as ws:
                        self.connects += 1
                        prometheus.STREAM_CONNECTS.labels(self.market.name).inc()
                        self._session(ws)
                    attempt = 0
                except SubscriptionRejected as exc:
                    set_state(self.market, State.ERROR, str(exc))
                    raise
                except CONNECTION_ERRORS as exc:
                    attempt += 1
                    prometheus.STREAM_RECONNECTS.labels(self.market.name).inc()
                    delay = backoff_delay(attempt, settings.STREAM_BACKOFF_BASE_S, settings.STREAM_BACKOFF_MAX_S)
                    reason = f"{type(exc).__name__}: {exc}".strip()
                    set_state(self.market, State.RECONNECTING, f"{reason}; retry {attempt} in {delay:.1f}s")
                    log.info("%s: %s; reconnecting in %.1fs", self.market, reason, delay)
                    self._sleep(delay)
        except StreamStopped:
            set_state(self.market, State.STOPPED)

    def _session(self, ws: ClientConnection) -> None:
        try:
            self._read(ws)
        finally:
            if self.book is not None:
                self.book.disconnected()

    def _read(self, ws: ClientConnection) -> None:
        source, book = self.source, self.book
        for frame in source.subscribe_frames():
            ws.send(json.dumps(frame))
        ingestor = Ingestor(self.market, self.stats, self.on_commit)
        grace = Grace(market=self.market.name)
        live = False
        last_frame = time.monotonic()
        pinged = False
        while True:
            self._check()
            try:
                raw = ws.recv(timeout=self._wait(ingestor, grace) if live else RECV_TIMEOUT_S)
            except TimeoutError:
                raw = None
            now = time.monotonic()
            if raw is not None:
                last_frame, pinged = now, False
                try:
                    result = source.parse(load_frame(raw))
                except MalformedFrame as exc:
                    result = self._malformed(exc, now)
                if source.book_lost is not None:  # e.g. a sequence gap: before this frame's own book message
                    if book is not None:
                        book.lost(source.book_lost, now)
                    source.book_lost = None
                if type(result) is list:
                    if result:
                        if live:
                            grace.observe(result)
                        ingestor.ingest(result)
                elif type(result) is BookMessage:
                    if book is not None:
                        try:
                            book.apply(result, now)
                        except MalformedFrame as exc:
                            self._malformed(exc, now)
                elif type(result) is Unused:
                    self._unused(result)
                elif result is True and not live:
                    # Subscribed: the socket buffers live trades while history fills the gap before them.
                    self._fill_gap(ingestor)
                    live = True
                    set_state(self.market, State.LIVE, f"{source.url} (connect #{self.connects})")
                    if book is not None:
                        book.live(time.monotonic())
                if source.outbox:
                    for frame in source.outbox:
                        ws.send(json.dumps(frame))
                    source.outbox.clear()
            elif now - last_frame > settings.STREAM_SILENCE_S:
                raise TimeoutError(f"no frame for {settings.STREAM_SILENCE_S:.0f}s")
            elif now - last_frame > settings.STREAM_SILENCE_S / 2 and not pinged:
                if ping := source.ping_frame():
                    ws.send(json.dumps(ping))
                pinged = True
            if book is not None and book.resync_at is not None and now >= book.resync_at:
                for frame in source.book_resync_frames():
                    ws.send(json.dumps(frame))
                book.resync_sent(now)
            if live:
                # Windows close on the clock, so quiet markets still get their candles (and book windows).
                ingestor.finalize_due(time.time() - grace.seconds(), book)

    @staticmethod
    def _wait(ingestor: Ingestor, grace: Grace) -> float:
        """How long to wait for a frame: until the next window is due to close, at most RECV_TIMEOUT_S."""
        due = ingestor.next_close() + grace.seconds() - time.time()
        return min(RECV_TIMEOUT_S, max(0.001, due))

    def _malformed(self, exc: MalformedFrame, now: float) -> None:
        """Log and count a frame that cannot be used; a bad book frame means the book must be fetched again."""
        self.malformed += 1
        prometheus.STREAM_MALFORMED.labels(self.market.name).inc()
        if isinstance(exc, MalformedBook) and self.book is not None:
            log.warning("%s: malformed frame #%d ignored, book fetched again: %s", self.market, self.malformed, exc)
            self.book.lost(str(exc), now, quiet=True)
        else:
            log.warning("%s: malformed frame #%d ignored: %s", self.market, self.malformed, exc)

    def _unused(self, frame: Unused) -> None:
        """Count a frame of a channel not consumed; logged once per channel and process, as it is no fault."""
        self.unused += 1
        if frame.channel not in self.unused_channels:
            self.unused_channels.add(frame.channel)
            log.info("%s: frames of the %s channel are not used here: ignored", self.market, frame.channel)
        prometheus.STREAM_UNUSED.labels(self.market.name, frame.channel).inc()

    def _fill_gap(self, ingestor: Ingestor) -> None:
        since = history_start(self.market)
        pages = self.source.history(to_ns(since))
        if pages is None:
            return
        set_state(self.market, State.BACKFILLING, f"from {since.isoformat()}")
        for ticks, _cursor in pages:
            self._check()
            ingestor.ingest(ticks, close_until=ticks[-1].ts.timestamp())
        log.info("%s: gap filled from %s (%d trades stored so far)", self.market, since, ingestor.stats.stored)

    def _check(self) -> None:
        if self.stopping.is_set() or not self.keep_going():
            raise StreamStopped

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check()
            time.sleep(min(left, RECV_TIMEOUT_S))
