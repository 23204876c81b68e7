"""The live order book of one market: applies a source's book messages, verifies them, stores its windows.

The book counterpart of markets.trades.ingest.Ingestor, owned by the stream runner
for as long as it runs (across reconnections, so the window series goes on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from markets.book.orderbook import BookBar, BookTop, OrderBook
from markets.book.store import new_windows, record_book_status, store_windows
from markets.models import BookWindow, Market
from markets.streams.sources.base import BookMessage, MalformedBook, backoff_delay
from markets.trades.candles import epoch_to_datetime

log = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 10.0  # a book (re)subscribed that has not resumed by then is requested again
RESYNC_RESET_S = 60.0  # a resync this long after the previous one starts the backoff afresh


@dataclass
class BookStats:
    messages: int = 0  # snapshots and updates applied
    snapshots: int = 0
    ignored: int = 0  # updates received while the book waited for a snapshot
    checksum_failures: int = 0
    resyncs: int = 0  # requests for a fresh snapshot sent
    windows: int = 0  # windows stored
    receive_stamped: int = 0  # messages applied that carried no exchange time: stamped with their receive time


class BookIngestor:
    """Keeps one market's order book from its source's messages and turns it into stored book windows.

    - apply(message) after each book message: a snapshot replaces the book, an
      update sets its levels and truncates to the depth; the exchange's
      checksum, when sent, is verified after every message. A verified,
      uncrossed book feeds the market's BookWindows (BookTop of the first
      BOOK_FEATURE_LEVELS levels), stamped with the exchange's time, or with
      the receive time for a message that has none (counted).
    - A book that cannot be right (checksum mismatch, crossed, a malformed
      frame, a sequence gap, a disconnect) is lost: it is no longer observed
      until a snapshot resumes it. For all but a disconnect a resync is due at
      once (resync_at; the runner sends the source's resync frames and calls
      resync_sent), later ones of a run of failures with backoff.
    - finalize_due(now) on the candles' clock stores the windows that ended by
      now, inside the caller's transaction. A window whose end passed while the
      book was lost gets no row (its state at the end is unknown): the series
      ends there and the next snapshot starts a new one.

    Times: window logic uses the messages' exchange times (epoch seconds);
    resync timers use time.monotonic(). A message stamped before the open
    window (more than the grace late) counts at the open window's start.
    """

    def __init__(self, market: Market, depth: int, checksum: Callable[[OrderBook], int] | None = None):
        self.market = market
        self.book = OrderBook(depth)
        self.checksum = checksum
        self.levels = settings.BOOK_FEATURE_LEVELS
        self.windows = new_windows(market)
        self.interval_s = market.interval_s
        last = (
            BookWindow.objects.filter(market=market, interval_s=self.interval_s)
            .order_by("-start")
            .values_list("start", flat=True)
            .first()
        )
        # Stored windows are final: a restarted stream starts its series after them.
        self.windows.last_final = int(last.timestamp()) if last else None
        self.floor: int | None = self.windows.last_final + self.interval_s if last else None
        self.pending: list[BookBar] = []  # finalized by events, stored once the clock passes their end
        self.valid = False
        self.last_ts: datetime | None = None  # exchange time of the last message observed
        self.resync_at: float | None = None  # monotonic time the runner should request a fresh snapshot
        self.attempt = 0
        self.last_resync = -math.inf
        self.stats = BookStats()
        self.stamped_unrecorded = 0  # receive-time stamps not yet added to the market's count (see finalize_due)

    # --- messages -------------------------------------------------------------------------
    def apply(self, message: BookMessage, now: float, received: datetime | None = None) -> None:
        """Apply one message (now: time.monotonic()); raises MalformedBook for a book that cannot be right.

        received: when the message arrived (default: now), its time if the exchange sent none.
        """
        book = self.book
        try:
            if message.snapshot:
                book.load(message.bids, message.asks)
                self.stats.snapshots += 1
            elif not self.valid:
                self.stats.ignored += 1
                return
            else:
                book.update(message.bids, message.asks)
        except ValueError as exc:  # a negative qty the source let through
            self.lost(f"{message.frame}: {exc}", now, quiet=True)
            raise MalformedBook(f"{message.frame}: {exc}") from None
        self.stats.messages += 1
        if message.checksum is not None and self.checksum is not None:
            ours = self.checksum(book)
            if ours != message.checksum:
                self.stats.checksum_failures += 1
                record_book_status(self.market, checksum_failures=1)
                self.lost(f"checksum mismatch after the {message.frame}: exchange {message.checksum}, ours {ours}", now)
                return
        if book.crossed():
            (bid, _), (ask, _) = book.best_bid(), book.best_ask()
            problem = f"{message.frame}: crossed book after it (best bid {bid} >= best ask {ask})"
            self.lost(problem, now, quiet=True)
            raise MalformedBook(problem)
        stamped = message.ts
        if stamped is None:
            stamped = received or datetime.now(UTC)
            self.stats.receive_stamped += 1
            self.stamped_unrecorded += 1
        if not self.valid:
            self._resume(message, stamped)
        top = BookTop.from_book(book, self.levels)
        if top is None:  # a side is empty: not a state the windows can hold
            return
        ts, floor = stamped, self._floor()
        if floor is not None and ts.timestamp() < floor:
            ts = epoch_to_datetime(floor)
        self.pending += self.windows.observe(ts, top)
        self.last_ts = stamped

    def _resume(self, message: BookMessage, ts: datetime) -> None:
        """A snapshot makes the book known again (a resync's, or the first of a connection)."""
        self.valid = True
        self.resync_at = None
        windows = self.windows
        if windows.start is not None and ts.timestamp() >= windows.start + self.interval_s:
            # The book was lost in the open window and is back only after its end: its end state is unknown.
            self._abandon()
        book = self.book
        log.info(
            "%s: book live from the %s (%d bids, %d asks)", self.market, message.frame, len(book.bids), len(book.asks)
        )

    def _floor(self) -> int | None:
        """The earliest time a message may count at: the open window's start, else after the last final one."""
        windows = self.windows
        if windows.start is not None:
            return windows.start
        candidates = [self.floor]
        if windows.last_final is not None:
            candidates.append(windows.last_final + self.interval_s)
        return max((c for c in candidates if c is not None), default=None)

    def _abandon(self) -> None:
        start = self.windows.start
        self.windows.abandon()
        self.floor = max(self.floor or 0, start + self.interval_s)
        log.info("%s: no book window for %s: the book was lost before its end", self.market, epoch_to_datetime(start))

    # --- losing and resyncing -------------------------------------------------------------
    def lost(self, reason: str, now: float, resync: bool = True, quiet: bool = False) -> None:
        """Stop using the book until a snapshot; with resync, a fresh snapshot is due (at once or with backoff).

        quiet: the caller logs the reason itself (a malformed frame).
        """
        if self.valid and not quiet:
            log.warning("%s: book lost (%s)%s", self.market, reason, "; resyncing" if resync else "")
        self.valid = False
        self.book.clear()
        if resync:
            if now - self.last_resync > RESYNC_RESET_S:
                self.attempt = 0  # the book stayed right a good while: this is a new run of failures
            due = now + (self._backoff() if self.attempt else 0.0)
            if self.resync_at is None or due < self.resync_at:
                self.resync_at = due

    def _backoff(self) -> float:
        return backoff_delay(self.attempt, settings.STREAM_BACKOFF_BASE_S, settings.STREAM_BACKOFF_MAX_S)

    def resync_sent(self, now: float) -> None:
        """The runner sent the resync frames: counted; if no snapshot resumes the book in time, again."""
        self.attempt += 1
        self.stats.resyncs += 1
        record_book_status(self.market, resyncs=1)
        self.last_resync = now
        self.resync_at = now + max(SNAPSHOT_WAIT_S, self._backoff())

    def live(self, now: float) -> None:
        """The connection is live: a book not resumed within SNAPSHOT_WAIT_S is requested again."""
        if not self.valid and self.resync_at is None:
            self.resync_at = now + SNAPSHOT_WAIT_S

    def disconnected(self) -> None:
        """The connection ended: the book is unknown until the next connection's snapshot."""
        if self.valid:
            log.info("%s: book lost with the connection", self.market)
        self.lost("disconnected", 0.0, resync=False, quiet=True)
        self.resync_at = None

    # --- windows --------------------------------------------------------------------------
    def finalize_due(self, now: float) -> int:
        """Store the windows that ended by now (epoch seconds, the candles' clock); returns how many.

        Called inside the Ingestor's transaction that finalizes the candles of the same clock.
        """
        windows, interval = self.windows, self.interval_s
        if not self.valid and windows.start is not None and now >= windows.start + interval:
            self._abandon()
        if windows.start is not None and now >= windows.start + interval:
            self.pending += windows.close_until(now)
        if not self.pending:
            return 0
        due = [bar for bar in self.pending if bar.start + interval <= now]
        if not due:
            return 0
        store_windows(self.market, interval, due)
        del self.pending[: len(due)]  # only once stored: a failed store keeps them for the next call
        depth = max(len(self.book.bids), len(self.book.asks))
        # Receive-time stamps go with this regular write, not one each: a source could send no times at all.
        record_book_status(
            self.market, depth=depth or None, updated_at=self.last_ts, receive_stamped=self.stamped_unrecorded
        )
        self.stamped_unrecorded = 0
        self.stats.windows += len(due)
        return len(due)
