"""Order books and the one per-window book aggregator used by live streams and replay.

Pure Python, no database. Prices and quantities are Decimals as the exchange
sent them; windows are epoch-aligned integer seconds [start, start + interval),
like the candles of markets/trades/candles.py.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from markets.trades.candles import epoch_to_datetime

PRICE_PLACES = Decimal("1e-12")  # the scale of the stored prices (markets.models.PRICE)
CHECKSUM_LEVELS = 10
CHECKSUM_CACHE = 1024  # (price, qty) -> checksum digits kept per book; cleared when full
Levels = Iterable[tuple[Decimal, Decimal]]  # (price, qty) pairs


class OrderBook:
    """Price levels of both sides (price -> qty), kept to `depth` levels per side.

    Each side is a dict and a list of its prices in ascending order (bisect), so
    a level update costs a dict operation and, for a new or removed price, one
    insertion into a list of at most `depth` prices. The best bid is the last
    bid price, the best ask the first ask price.
    """

    __slots__ = ("_ask_prices", "_bid_prices", "_checksum_parts", "asks", "bids", "depth")

    def __init__(self, depth: int):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []
        self._ask_prices: list[Decimal] = []
        # kraken_checksum's digits of the levels it has seen, for one (price, qty) precision
        self._checksum_parts: tuple[tuple[int, int], dict[tuple[Decimal, Decimal], str]] = ((-1, -1), {})

    def _side(self, side: str) -> tuple[dict[Decimal, Decimal], list[Decimal]]:
        if side == "bid":
            return self.bids, self._bid_prices
        if side == "ask":
            return self.asks, self._ask_prices
        raise ValueError(f"bad side {side!r}: expected bid or ask")

    def apply(self, side: str, price: Decimal, qty: Decimal) -> None:
        """Set one level; qty 0 deletes it (deleting an absent level is a no-op).

        Does not truncate: call truncate() once the message's levels are applied.
        """
        levels, prices = self._side(side)
        if qty:
            if qty < 0:
                raise ValueError(f"negative qty {qty} at {side} {price}")
            if price not in levels:
                insort(prices, price)
            levels[price] = qty
        elif price in levels:
            del levels[price]
            del prices[bisect_left(prices, price)]

    def update(self, bids: Levels = (), asks: Levels = ()) -> None:
        """One update message: every level in order, then truncate()."""
        for price, qty in bids:
            self.apply("bid", price, qty)
        for price, qty in asks:
            self.apply("ask", price, qty)
        self.truncate()

    def truncate(self) -> None:
        """Drop levels beyond depth (exchanges send no delete for levels that fall out of scope)."""
        depth = self.depth
        if len(self._bid_prices) > depth:
            worst = self._bid_prices[: len(self._bid_prices) - depth]
            del self._bid_prices[: len(worst)]
            for price in worst:
                del self.bids[price]
        if len(self._ask_prices) > depth:
            worst = self._ask_prices[depth:]
            del self._ask_prices[depth:]
            for price in worst:
                del self.asks[price]

    def snapshot(self, bids: Levels, asks: Levels) -> int:
        """Replace the whole book with these levels (then truncate); returns the number of levels that changed.

        Applied as the level updates a feed would have sent (new or changed
        levels set, vanished ones deleted), so the count is what an incremental
        feed would have carried.
        """
        changed = self._replace("bid", bids) + self._replace("ask", asks)
        self.truncate()
        return changed

    def _replace(self, side: str, new_levels: Levels) -> int:
        levels, _ = self._side(side)
        new = dict(new_levels)
        changed = 0
        for price in [p for p in levels if p not in new]:
            self.apply(side, price, Decimal(0))
            changed += 1
        for price, qty in new.items():
            if levels.get(price) != qty:
                self.apply(side, price, qty)
                changed += 1
        return changed

    def load(self, bids: Levels, asks: Levels) -> None:
        """Replace the whole book by these levels at once (a feed's snapshot), then truncate.

        qty 0 is skipped, a negative qty raises ValueError (the book is then
        empty). Sorting each side once costs far less than inserting the levels
        one by one into a book of thousands (a Coinbase snapshot).
        """
        sides = []
        for side, new_levels in (("bid", bids), ("ask", asks)):
            levels: dict[Decimal, Decimal] = {}
            for price, qty in new_levels:
                if qty < 0:
                    self.clear()
                    raise ValueError(f"negative qty {qty} at {side} {price}")
                if qty:
                    levels[price] = qty
                else:
                    levels.pop(price, None)
            sides.append(levels)
        self.bids, self.asks = sides
        self._bid_prices, self._ask_prices = sorted(self.bids), sorted(self.asks)
        self.truncate()

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return price, self.bids[price]

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return price, self.asks[price]

    def levels(self, side: str, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """The best n levels of a side (all if n is None), best first: bids descending, asks ascending."""
        levels, prices = self._side(side)
        if side == "bid":
            chosen = prices[::-1] if n is None else prices[: -n - 1 : -1] if n > 0 else []
        else:
            chosen = prices if n is None else prices[:n]
        return [(price, levels[price]) for price in chosen]

    def crossed(self) -> bool:
        """Best bid at or above best ask (crossed or locked): the book cannot be right."""
        return bool(self._bid_prices and self._ask_prices and self._bid_prices[-1] >= self._ask_prices[0])

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


def kraken_checksum(book: OrderBook, price_decimals: int, qty_decimals: int) -> int:
    """Kraken WebSocket v2 book checksum (unsigned CRC32) of the top 10 levels of each side.

    For the 10 best asks (price ascending), then the 10 best bids (price
    descending): price and qty written at the pair's precision, "." removed,
    leading zeros stripped (0.00100000 at 8 decimals -> 100000), all concatenated.
    Most top levels are unchanged from one message to the next, so the book
    keeps each level's digits (a third of the cost on real books).
    """
    places, parts_of = book._checksum_parts
    if places != (price_decimals, qty_decimals) or len(parts_of) > CHECKSUM_CACHE:
        parts_of = {}
        book._checksum_parts = ((price_decimals, qty_decimals), parts_of)
    parts: list[str] = []
    append = parts.append
    last_p, last_q = -price_decimals - 1, -qty_decimals - 1
    for levels in (book.levels("ask", CHECKSUM_LEVELS), book.levels("bid", CHECKSUM_LEVELS)):
        for level in levels:
            part = parts_of.get(level)
            if part is None:
                price, qty = level
                # str() is the fast path: Kraken sends values at exactly the pair's precision.
                p, q = str(price), str(qty)
                if p.find(".") != len(p) + last_p or "E" in p:
                    p = str(int(price.scaleb(price_decimals)))
                if q.find(".") != len(q) + last_q or "E" in q:
                    q = str(int(qty.scaleb(qty_decimals)))
                part = parts_of[level] = p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
            append(part)
    return zlib.crc32("".join(parts).encode("ascii"))


@dataclass(slots=True, frozen=True)
class BookTop:
    """What the window features need of one book state: the best levels and the first N levels' sizes."""

    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    bid_depth: Decimal  # total qty of the first N bid levels
    ask_depth: Decimal
    bid_levels: tuple[tuple[Decimal, Decimal], ...] = ()  # the first N (price, qty), best first
    ask_levels: tuple[tuple[Decimal, Decimal], ...] = ()

    @classmethod
    def from_book(cls, book: OrderBook, levels: int) -> BookTop | None:
        """The book's top; None while a side is empty (such a state is not observed)."""
        bids, asks = book.levels("bid", levels), book.levels("ask", levels)
        if not bids or not asks:
            return None
        return cls(
            bids[0][0],
            bids[0][1],
            asks[0][0],
            asks[0][1],
            sum(q for _, q in bids),
            sum(q for _, q in asks),
            tuple(bids),
            tuple(asks),
        )

    @property
    def spread(self) -> float:
        return float(self.ask_price - self.bid_price)

    @property
    def imbalance(self) -> float:
        """(qb - qa) / (qb + qa) at the best levels."""
        return float((self.bid_qty - self.ask_qty) / (self.bid_qty + self.ask_qty))

    @property
    def depth_imbalance(self) -> float:
        """(sum bid qty - sum ask qty) / (sum of both) over the first N levels."""
        return float((self.bid_depth - self.ask_depth) / (self.bid_depth + self.ask_depth))

    @property
    def mid(self) -> Decimal:
        return ((self.bid_price + self.ask_price) / 2).quantize(PRICE_PLACES)

    @property
    def microprice(self) -> Decimal:
        """(bid * qa + ask * qb) / (qb + qa): the mid weighted towards the side with less size."""
        weighted = self.bid_price * self.ask_qty + self.ask_price * self.bid_qty
        return (weighted / (self.bid_qty + self.ask_qty)).quantize(PRICE_PLACES)


def order_flow(previous: BookTop, current: BookTop) -> Decimal:
    """Best-level order-flow imbalance of one event (Cont, Kukanov & Stoikov 2014)."""
    return level_flow(
        (previous.bid_price, previous.bid_qty),
        (current.bid_price, current.bid_qty),
        (previous.ask_price, previous.ask_qty),
        (current.ask_price, current.ask_qty),
    )


def level_flow(bid_before, bid_now, ask_before, ask_now) -> Decimal:
    """Order-flow imbalance of one event at one level, each argument a (price, qty) pair.

    e = 1{Pb >= Pb'} qb - 1{Pb <= Pb'} qb' - 1{Pa <= Pa'} qa + 1{Pa >= Pa'} qa'
    where ' marks the state before the event.
    """
    (pb0, qb0), (pb, qb), (pa0, qa0), (pa, qa) = bid_before, bid_now, ask_before, ask_now
    e = Decimal(0)
    if pb >= pb0:
        e += qb
    if pb <= pb0:
        e -= qb0
    if pa <= pa0:
        e -= qa
    if pa >= pa0:
        e += qa0
    return e


def multilevel_order_flow(previous: BookTop, current: BookTop) -> Decimal:
    """Order-flow imbalance of one event summed over levels 1..N (Xu, Gould & Howison 2018).

    Level m compares the m-th best bid and ask before and after the event with
    the best-level rule; a level that one of the two states does not have
    (a book shallower than N) adds nothing.
    """
    levels = min(len(previous.bid_levels), len(current.bid_levels), len(previous.ask_levels), len(current.ask_levels))
    return sum(
        (
            level_flow(previous.bid_levels[m], current.bid_levels[m], previous.ask_levels[m], current.ask_levels[m])
            for m in range(levels)
        ),
        Decimal(0),
    )


@dataclass(slots=True)
class BookBar:
    """One finalized window of book features (the book's counterpart of candles.Bar)."""

    start: int  # epoch second
    bid_price: Decimal  # top of book as of the window end
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    mid: Decimal
    microprice: Decimal
    ofi: float  # summed over the window's events
    spread_tw: float  # time-weighted over the window
    imbalance_tw: float
    depth_imbalance: float  # as of the window end
    updates: int
    ofi_levels: float | None = None  # OFI over levels 1..N summed over the window's events (None: not recorded)

    @classmethod
    def of(
        cls,
        start: int,
        top: BookTop,
        ofi: float,
        spread_tw: float,
        imbalance_tw: float,
        updates: int,
        ofi_levels: float = 0.0,
    ) -> BookBar:
        return cls(
            start,
            top.bid_price,
            top.bid_qty,
            top.ask_price,
            top.ask_qty,
            top.mid,
            top.microprice,
            ofi,
            spread_tw,
            imbalance_tw,
            top.depth_imbalance,
            updates,
            ofi_levels,
        )


class BookWindows:
    """Per-window book features of one market, fed every book change in time order.

    - observe(ts, top) after each snapshot or update; it returns the windows
      that this event finalized (those before the event's window).
    - close_until(now) finalizes windows that ended at or before now, with no
      update in them or not (an empty window carries the previous state,
      updates 0, OFI 0); close_all() finalizes the open window at end of input.

    Time-weighted values hold each state until the next event; the state at a
    window's start is the last one before it. The first window of a series is
    weighted over the part after its first event, and that event's OFI is 0
    (there is no earlier state).

    Memory stays bounded whatever the timestamps: one window is open at a time,
    and a gap of more than max_fill_s seconds of empty windows (the rule of
    CANDLE_MAX_FILL_S) starts a new series instead of generating windows. An
    event in a window before the open one (or, after a series ended, at or
    before the last finalized window) raises ValueError naming its time: those
    windows are final. An event earlier than the previous one within the open
    window is taken as simultaneous with it.
    """

    def __init__(self, interval_s: int, max_fill_s: int = 0):
        if interval_s < 1:
            raise ValueError(f"interval must be at least 1 s, got {interval_s}")
        self.interval_s = interval_s
        self.max_fill_s = max_fill_s
        self.last_final: int | None = None  # start of the last finalized window
        self.start: int | None = None  # the open window; None between series
        self.top: BookTop | None = None  # the current state
        self._reset(None)

    def _reset(self, covered_from: float | None) -> None:
        """Empty accumulators for a new open window whose weighting starts at covered_from."""
        self.covered_from = covered_from  # window start, or the series' first event
        self.t = covered_from  # time since when self.top holds
        self.updates = 0
        self.ofi = Decimal(0)
        self.ofi_levels = Decimal(0)
        self.spread_area = 0.0
        self.imbalance_area = 0.0

    def observe(self, ts: datetime, top: BookTop) -> list[BookBar]:
        t = ts.timestamp()
        start = int(t) // self.interval_s * self.interval_s
        out: list[BookBar] = []
        if self.start is not None and start != self.start:
            if start < self.start:
                raise ValueError(
                    f"book event at {ts.isoformat()} is before the open window"
                    f" {epoch_to_datetime(self.start).isoformat()}: earlier windows are final"
                )
            out = self._close_before(start)
        if self.start is None:
            if self.last_final is not None and start <= self.last_final:
                raise ValueError(
                    f"book event at {ts.isoformat()} falls in the finalized window"
                    f" {epoch_to_datetime(start).isoformat()} (last final"
                    f" {epoch_to_datetime(self.last_final).isoformat()})"
                )
            self.start, self.top = start, None
            self._reset(t)
        elif t > self.t:
            self._hold(t)
        if self.top is not None:
            self.ofi += order_flow(self.top, top)
            self.ofi_levels += multilevel_order_flow(self.top, top)
        self.top = top
        self.updates += 1
        return out

    def _hold(self, until: float) -> None:
        """Weight the current state from self.t to until."""
        duration = until - self.t
        top = self.top
        self.spread_area += float(top.ask_price - top.bid_price) * duration
        self.imbalance_area += top.imbalance * duration
        self.t = until

    def close_until(self, now: datetime | float) -> list[BookBar]:
        """Finalize every window that ended at or before now (epoch seconds or datetime)."""
        if isinstance(now, datetime):
            now = now.timestamp()
        until = int(now) // self.interval_s * self.interval_s  # the window holding now stays open
        if self.start is None or until <= self.start:
            return []
        return self._close_before(until)

    def abandon(self) -> None:
        """Drop the open window without finalizing it: its end state is unknown (the book was lost).

        The series ends; the next event starts a new one. The caller keeps later
        events out of the abandoned window (observe() does not know it).
        """
        self.start, self.top = None, None
        self._reset(None)

    def close_all(self) -> list[BookBar]:
        """End of input: finalize the open window (the series ends)."""
        if self.start is None:
            return []
        out = [self._finalize()]
        self.start, self.top = None, None
        return out

    def _finalize(self) -> BookBar:
        end = self.start + self.interval_s
        if end > self.t:
            self._hold(end)
        covered = end - self.covered_from
        spread_tw, imbalance_tw = self.spread_area / covered, self.imbalance_area / covered
        bar = BookBar.of(
            self.start, self.top, float(self.ofi), spread_tw, imbalance_tw, self.updates, float(self.ofi_levels)
        )
        self.last_final = self.start
        return bar

    def _close_before(self, until: int) -> list[BookBar]:
        """Finalize the open window and the empty ones after it, up to (excluding) the window at until."""
        interval = self.interval_s
        out = [self._finalize()]
        first_empty = self.start + interval
        if until - first_empty > self.max_fill_s:
            # A long outage (or a far-off timestamp): a new series rather than hours of copies.
            self.start, self.top = None, None
            return out
        top = self.top
        spread, imbalance = top.spread, top.imbalance
        for start in range(first_empty, until, interval):
            out.append(BookBar.of(start, top, 0.0, spread, imbalance, 0))
        if len(out) > 1:
            self.last_final = out[-1].start
        self.start = until
        self._reset(float(until))
        return out
