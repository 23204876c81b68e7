"""The one candle aggregator used by live streams, backfill, replay and exports.

Pure Python, no database: windows are integer epoch seconds [start, start + interval).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from operator import attrgetter
from typing import TypeVar

VWAP_PLACES = Decimal("1e-12")
T = TypeVar("T")
MAX_AHEAD_S = 3600  # a trade dated further after this machine's clock is refused (when lateness is bounded)


@dataclass(slots=True)
class Tick:
    """One trade as any source reports it; trade_id orders trades (exchange order)."""

    trade_id: int
    ts: datetime
    price: Decimal
    qty: Decimal
    side: str  # taker side: "buy" or "sell"


def window_start(ts: datetime, interval_s: int) -> int:
    """Epoch second of the window holding ts (windows are aligned to the Unix epoch)."""
    return int(ts.timestamp()) // interval_s * interval_s


def epoch_to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso(ts: datetime) -> str:
    """2021-07-01T00:00:21.647Z: UTC, milliseconds only when there are any."""
    text = ts.astimezone(UTC).isoformat(timespec="milliseconds" if ts.microsecond else "seconds")
    return text.replace("+00:00", "Z")


class Bar:
    """OHLCV accumulator for one window; open/close follow trade id, whatever the arrival order."""

    __slots__ = (
        "buy_volume",
        "close",
        "first_id",
        "high",
        "last_id",
        "low",
        "notional",
        "open",
        "sell_volume",
        "start",
        "trades",
        "volume",
    )

    def __init__(self, start: int):
        self.start = start
        self.trades = 0
        self.volume = self.buy_volume = self.sell_volume = self.notional = Decimal(0)
        self.open = self.high = self.low = self.close = None
        self.first_id = self.last_id = None

    @classmethod
    def empty(cls, start: int, previous_close: Decimal) -> Bar:
        """A window without trades: flat at the previous close, volume 0."""
        bar = cls(start)
        bar.open = bar.high = bar.low = bar.close = previous_close
        return bar

    def add(self, tick: Tick) -> None:
        price, qty = tick.price, tick.qty
        if self.trades == 0:
            self.open = self.high = self.low = self.close = price
            self.first_id = self.last_id = tick.trade_id
        else:
            if price > self.high:
                self.high = price
            elif price < self.low:
                self.low = price
            if tick.trade_id < self.first_id:
                self.first_id, self.open = tick.trade_id, price
            if tick.trade_id >= self.last_id:
                self.last_id, self.close = tick.trade_id, price
        self.trades += 1
        self.volume += qty
        self.notional += price * qty
        if tick.side == "buy":
            self.buy_volume += qty
        else:
            self.sell_volume += qty

    @property
    def vwap(self) -> Decimal | None:
        return (self.notional / self.volume).quantize(VWAP_PLACES) if self.volume else None


def bars_from_ticks(ticks: Iterable[Tick], interval_s: int) -> dict[int, Bar]:
    bars: dict[int, Bar] = {}
    for tick in ticks:
        start = window_start(tick.ts, interval_s)
        bar = bars.get(start)
        if bar is None:
            bar = bars[start] = Bar(start)
        bar.add(tick)
    return bars


def fill_gaps(
    bars: Iterable[Bar], interval_s: int, previous_close: Decimal | None = None, max_fill_s: int | None = None
) -> list[Bar]:
    """Bars in window order with every missing window between them as an empty bar.

    With max_fill_s, a longer gap is left as it is (a new series, as the Aggregator makes it).
    """
    out: list[Bar] = []
    for bar in sorted(bars, key=lambda b: b.start):
        if out and (max_fill_s is None or bar.start - out[-1].start - interval_s <= max_fill_s):
            out.extend(Bar.empty(s, out[-1].close) for s in range(out[-1].start + interval_s, bar.start, interval_s))
        out.append(bar)
    return out


def merge(bars: list[Bar], start: int) -> Bar:
    """Consecutive bars (window order) as one longer bar, e.g. 10 s candles into 1 min."""
    merged = Bar(start)
    merged.open, merged.close = bars[0].open, bars[-1].close
    merged.high = max(b.high for b in bars)
    merged.low = min(b.low for b in bars)
    for bar in bars:
        merged.trades += bar.trades
        merged.volume += bar.volume
        merged.buy_volume += bar.buy_volume
        merged.sell_volume += bar.sell_volume
        merged.notional += bar.notional
    return merged


class Aggregator:
    """Open windows of one market; finalizes them when the clock passes their end.

    The caller chooses the clock: wall time minus a grace period for live
    streams, the latest trade's time for backfill and replay. Windows at or
    before the last finalized one are late: the caller amends those candles.

    With max_late_s set, time may only go back so far: a trade whose window
    starts more than max_late_s before the newest window seen (the last final
    one to begin with), or more than MAX_AHEAD_S after the wall clock, is
    refused: skipped and listed in refused as (tick, reason) for the caller.
    Whatever the timestamps, the open windows and the late ones of any batch
    then span at most max_late_s. Windows are checked only when a trade leaves
    the previous trade's window, so the common case costs nothing more.
    """

    def __init__(
        self,
        interval_s: int,
        last_final: int | None = None,
        last_close: Decimal | None = None,
        max_fill_s: int = 0,
        max_late_s: int | None = None,
    ):
        self.interval_s = interval_s
        self.last_final = last_final
        self.last_close = last_close
        self.max_fill_s = max_fill_s
        self.max_late_s = max_late_s
        self.newest = last_final  # newest window seen (accepted)
        self.open: dict[int, Bar] = {}
        self.refused: list[tuple[Tick, str]] = []

    def add(self, ticks: Iterable[Tick]) -> dict[int, int]:
        """Aggregate ticks; returns late windows (start -> trade count). Refused ticks go to self.refused."""
        late: dict[int, int] = {}
        interval, last_final, bars, max_late = self.interval_s, self.last_final, self.open, self.max_late_s
        newest = self.newest
        floor = newest - max_late if max_late is not None and newest is not None else None
        ahead = time.time() + MAX_AHEAD_S  # the wall clock, read once per batch
        bar, begin, end = None, None, None  # the window of the previous tick, as datetimes
        for tick in ticks:
            # Most ticks fall into the previous tick's window: two comparisons decide it.
            if bar is not None and begin <= tick.ts < end:
                bar.add(tick)
                continue
            start = int(tick.ts.timestamp()) // interval * interval
            if max_late is not None:
                if newest is None or start > newest:
                    if start > ahead:
                        self._refuse(tick, f"is in the future (this machine's clock says {iso(datetime.now(UTC))})")
                        bar = None
                        continue
                    newest, floor = start, start - max_late
                elif start < floor:
                    self._refuse(
                        tick,
                        f"is older than {iso(epoch_to_datetime(floor))} (CANDLE_MAX_LATE_S={max_late}s before"
                        f" the newest window so far, {iso(epoch_to_datetime(newest))})",
                    )
                    bar = None
                    continue
            if last_final is not None and start <= last_final:
                late[start] = late.get(start, 0) + 1
                bar = None
                continue
            bar = bars.get(start)
            if bar is None:
                bar = bars[start] = Bar(start)
            begin, end = epoch_to_datetime(start), epoch_to_datetime(start + interval)
            bar.add(tick)
        self.newest = newest
        return late

    def _refuse(self, tick: Tick, why: str) -> None:
        self.refused.append((tick, f"trade at {iso(tick.ts)} {why}"))

    def close_until(self, now: float) -> list[Bar]:
        """Finalize every window that ended at or before now, empty ones included."""
        interval = self.interval_s
        last_closable = int(now) // interval * interval - interval
        out: list[Bar] = []
        for start in sorted(s for s in self.open if s <= last_closable):
            out.extend(self._empties(start))
            bar = self.open.pop(start)
            out.append(bar)
            self.last_final, self.last_close = start, bar.close
        out.extend(self._empties(last_closable + interval))
        if self.last_final is not None and (self.newest is None or self.last_final > self.newest):
            self.newest = self.last_final  # the clock moved on (a quiet live market): late trades are bounded from it
        return out

    def close_all(self) -> list[Bar]:
        """End of input (replay, backfill): finalize everything still open."""
        if not self.open:
            return []
        return self.close_until(max(self.open) + self.interval_s)

    def _empties(self, until: int) -> list[Bar]:
        """Empty bars for windows after the last final one, before until."""
        if self.last_final is None or self.last_close is None:
            return []
        first = self.last_final + self.interval_s
        if until - first > self.max_fill_s:
            # A long outage (or an old replay before live data): start a new series rather than
            # inventing hours of flat candles.
            self.last_final = until - self.interval_s if self.open else None
            return []
        bars = [Bar.empty(s, self.last_close) for s in range(first, until, self.interval_s)]
        if bars:
            self.last_final = bars[-1].start
        return bars


def consecutive_runs(
    items: Sequence[T], interval_s: int, start: Callable[[T], datetime] = attrgetter("start")
) -> Iterator[list[T]]:
    """Runs of consecutive windows (items in window order; start gives an item's window start).

    Windows across a gap (longer than CANDLE_MAX_FILL_S: a new series) are
    processed one run at a time, so that no feature computation spans the gap.
    """
    if not items:
        return
    step = timedelta(seconds=interval_s)
    if start(items[-1]) - start(items[0]) == step * (len(items) - 1):  # the common case: one run
        yield list(items)
        return
    run = [items[0]]
    for previous, item in pairwise(items):
        if start(item) - start(previous) != step:
            yield run
            run = []
        run.append(item)
    yield run
