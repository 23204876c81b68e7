"""Store trades in batches and turn them into candles: the write path of every source."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from psycopg.errors import UniqueViolation

from core import prometheus
from core.bulk import insert_missing, upsert
from markets.models import Candle, Market, Trade
from markets.trades.candles import Aggregator, Bar, Tick, bars_from_ticks, epoch_to_datetime, iso, window_start
from markets.trades.stored import candle_from_bar

log = logging.getLogger(__name__)


class WindowsDue(Protocol):
    """What finalize_due needs of a market's live book (markets.streams.livebook.BookIngestor)."""

    def finalize_due(self, now: float) -> int: ...


CANDLE_FIELDS = ["open", "high", "low", "close", "volume", "buy_volume", "sell_volume", "trades", "vwap", "final"]


@dataclass
class IngestStats:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    candles: int = 0
    amended: int = 0
    refused: int = 0
    step_error: str = ""  # set by whoever runs the pipeline step after ingest: its error if the last run failed


class TradeRefused(ValueError):
    """Trades the database cannot take as they are: too far out of time order (see Aggregator, strict Ingestor
    only), or a candle's volume out of numeric(30,12) range. The batch is rolled back.

    matches(tick), called on the trades of the input in order, is true for the first one the refusal is
    about (to name a file's line).
    """

    def __init__(self, reason: str, matches: Callable[[Tick], bool]):
        super().__init__(reason)
        self.matches = matches

    @classmethod
    def of(cls, tick: Tick, reason: str) -> TradeRefused:
        return cls(reason, lambda t: t.trade_id == tick.trade_id and t.ts == tick.ts)


MAX_VOLUME = Decimal("1e28")  # candle volumes are numeric(40,12)


def check_volume(bars: list[Bar], interval_s: int) -> None:
    """TradeRefused if a candle's volume is too large to store (per candle, not per trade)."""
    for bar in bars:
        if bar.volume >= MAX_VOLUME:
            total = Decimal(0)

            def crosses(tick: Tick, start: int = bar.start) -> bool:
                nonlocal total
                if window_start(tick.ts, interval_s) == start:
                    total += tick.qty
                return total >= MAX_VOLUME

            raise TradeRefused(
                f"the volume of the {iso(epoch_to_datetime(bar.start))} candle reaches {bar.volume:.3E}:"
                " out of range (the database stores numeric(40,12), below 1e28)",
                crosses,
            )


TRADE_COLUMNS = ("trade_id", "ts", "price", "qty", "side", "market_id")
TRADE_TYPES = ("int8", "timestamptz", "numeric", "numeric", "text", "int8")


def copy_ticks(cursor, ticks: list[Tick], market_id: int) -> None:
    """Binary COPY of ticks straight into the trades table."""
    with cursor.copy(f"COPY {Trade._meta.db_table} ({', '.join(TRADE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(TRADE_TYPES))
        for t in ticks:
            copy.write_row((t.trade_id, t.ts, t.price, t.qty, t.side, market_id))


def store_trades(market: Market, ticks: list[Tick]) -> list[Tick]:
    """Store the ticks not stored yet (the first of each id) and return those.

    Fast path: COPY straight into the trades table, in a savepoint. If any
    tick is a duplicate the COPY fails as a whole, and the batch goes through a
    staging table and INSERT ... ON CONFLICT DO NOTHING instead.
    """
    if not ticks:
        return []
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                copy_ticks(cursor, ticks, market.pk)
            return ticks
        except UniqueViolation:  # raised by psycopg itself: COPY bypasses Django's error wrapping
            return _store_new(market, ticks)


def store_trade_rows(
    market: Market, chunks: Iterator[tuple[list[Tick], list[list[str]]]]
) -> tuple[list[Tick], list[Tick]]:
    """store_trades() for a trades file read in chunks (read_trade_rows): (all ticks, the new ones).

    Each chunk goes to PostgreSQL as soon as it is parsed, as COPY text (see
    copy_text), so the server stores one chunk while Python parses the next:
    the two halves of the work run on two cores at once. Should the COPY meet
    a stored trade, the whole batch goes through the staging table instead.
    """
    ticks: list[Tick] = []
    with connection.cursor() as cursor:
        try:
            with (
                transaction.atomic(),
                cursor.copy(f"COPY {Trade._meta.db_table} ({TEXT_COLUMNS}) FROM STDIN") as copy,
            ):
                for chunk, rows in chunks:
                    ticks.extend(chunk)
                    copy.write(copy_text(chunk, rows, market.pk))
            return ticks, ticks
        except UniqueViolation:
            ticks.extend(tick for chunk, _ in chunks for tick in chunk)  # the COPY may stop early
            return ticks, _store_new(market, ticks)


# COPY text of trades: the columns, and the separators of a UTC timestamp with up to microseconds.
TEXT_COLUMNS = "trade_id, ts, price, qty, side, market_id"
TS_SEPARATORS = ("--T::.", "--T::Z")


def copy_text(ticks: list[Tick], rows: list[list[str]], market_id: int) -> str:
    """COPY text lines (TEXT_COLUMNS) of ticks parsed from rows of a trades file.

    Formatting a datetime costs more than the rest of the line, so the file's
    own timestamp is used when PostgreSQL reads it exactly as Python did: a
    parsed YYYY-MM-DDTHH:MM:SS[.ffffff]Z (at most microseconds, which
    PostgreSQL would round). Numbers are the parsed Decimals, exact either way.
    """
    end = f"\t{market_id}\n"
    lines = []
    for t, (ts, *_) in zip(ticks, rows, strict=True):
        if not (ts[-1:] == "Z" and len(ts) <= 27 and ts[4:20:3] in TS_SEPARATORS):
            ts = t.ts.isoformat()
        lines.append(f"{t.trade_id}\t{ts}\t{t.price!s}\t{t.qty!s}\t{t.side}{end}")
    return "".join(lines)


def _store_new(market: Market, ticks: list[Tick]) -> list[Tick]:
    """Insert the ticks not stored yet (through the staging table); returns those, in order."""
    rows = ((t.trade_id, t.ts, t.price, t.qty, t.side, market.pk) for t in ticks)
    inserted = set(insert_missing(Trade._meta.db_table, TRADE_COLUMNS, TRADE_TYPES, rows, returning="trade_id"))
    if len(inserted) == len(ticks):
        return ticks
    new = []
    for tick in ticks:
        if tick.trade_id in inserted:
            inserted.discard(tick.trade_id)
            new.append(tick)
    return new


class Ingestor:
    """Writes one market's trades and candles; one instance per running source.

    Call it in autocommit mode: each batch is one transaction. After a
    transaction that finalized or amended candles, on_commit is called: the
    caller's cue to run the pipeline step (features, predictions, scoring),
    which finds its work in the database, so nothing is lost if it fails.
    A trade the aggregator refuses (older than CANDLE_MAX_LATE_S before the
    newest, or from the future) raises TradeRefused when strict (replay: the
    batch is rolled back), else it is deleted again and logged (live sources).
    """

    def __init__(
        self,
        market: Market,
        stats: IngestStats | None = None,
        on_commit: Callable[[], None] | None = None,
        strict: bool = False,
    ):
        self.market = market
        self.on_commit = on_commit
        self.interval_s = market.interval_s
        self.stats = stats or IngestStats()
        self.strict = strict
        last = Candle.objects.filter(market=market, interval_s=self.interval_s, final=True).order_by("-start").first()
        self.aggregator = Aggregator(
            self.interval_s,
            last_final=int(last.start.timestamp()) if last else None,
            last_close=last.close if last else None,
            max_fill_s=settings.CANDLE_MAX_FILL_S,
            max_late_s=settings.CANDLE_MAX_LATE_S,
        )
        # Trades stored after the last final window (a crash mid-window) go back into the open windows.
        resume_from = last.start + timedelta(seconds=self.interval_s) if last else None
        qs = Trade.objects.filter(market=market)
        if resume_from is not None:
            qs = qs.filter(ts__gte=resume_from)
        self.aggregator.add(Tick(*row) for row in qs.order_by("trade_id").values_list(*Tick.__slots__))
        for tick, reason in self.aggregator.refused:  # stored before the rule existed: left as they are
            log.warning("%s: stored trade %d left out of the open windows: %s", market, tick.trade_id, reason)
        self.aggregator.refused.clear()

    def ingest(self, ticks: list[Tick], close_until: float | None = None) -> list[Candle]:
        """Store ticks, aggregate the new ones, finalize windows ended by close_until (epoch seconds)."""
        with transaction.atomic():
            candles, amended = self._apply(ticks, store_trades(self.market, ticks), close_until)
        self._committed(candles, amended)
        return candles

    def ingest_rows(self, chunks: Iterator[tuple[list[Tick], list[list[str]]]]) -> int:
        """ingest() of a trades file's chunks (see store_trade_rows) as one batch; windows close by event time.

        Returns the number of ticks read: 0 once chunks is exhausted.
        """
        with transaction.atomic():
            ticks, new = store_trade_rows(self.market, chunks)
            candles, amended = self._apply(ticks, new, ticks[-1].ts.timestamp()) if ticks else ([], [])
        self._committed(candles, amended)
        return len(ticks)

    def _apply(
        self, ticks: list[Tick], new: list[Tick], close_until: float | None
    ) -> tuple[list[Candle], list[Candle]]:
        """Aggregate new (the ticks just stored of ticks), finalize windows ended by close_until.

        Returns the finalized candles and the ones late trades amended.
        """
        self.stats.read += len(ticks)
        self.stats.stored += len(new)
        self.stats.duplicates += len(ticks) - len(new)
        duplicates = len(ticks) - len(new)
        late = self.aggregator.add(new)
        if self.aggregator.refused:
            new = self._refuse(new)
            if close_until is not None:  # the clock of the batch's last trade: not one refused from the future
                close_until = min(close_until, max(t.ts for t in new).timestamp()) if new else None
        transaction.on_commit(partial(prometheus.ingested, self.market.name, len(new), duplicates))
        amended = self._amend(late) if late else []
        candles = self._finalize(self.aggregator.close_until(close_until) if close_until is not None else [])
        if new:
            Market.objects.filter(pk=self.market.pk).update(last_trade_at=max(t.ts for t in new))
        return candles, amended

    def next_close(self) -> float:
        """Epoch second at which the next window ends (the one after the last final one, or the current one)."""
        if self.aggregator.last_final is not None:
            return self.aggregator.last_final + 2 * self.interval_s
        return (time.time() // self.interval_s + 1) * self.interval_s

    def _refuse(self, new: list[Tick]) -> list[Tick]:
        """Raise TradeRefused (strict), or delete the refused trades again; returns new without them."""
        refused, self.aggregator.refused = self.aggregator.refused, []
        if self.strict:
            raise TradeRefused.of(*refused[0])
        ids = {tick.trade_id for tick, _ in refused}
        Trade.objects.filter(market=self.market, trade_id__in=ids).delete()
        self.stats.stored -= len(ids)
        self.stats.refused += len(ids)
        for tick, reason in refused[:3]:
            log.warning("%s: trade %d refused: %s", self.market, tick.trade_id, reason)
        return [t for t in new if t.trade_id not in ids]

    def finalize_due(self, now: float, book: WindowsDue | None = None) -> list[Candle]:
        """Finalize the windows that ended by now on the clock (quiet markets still get their candles).

        With the market's live book, its book windows of the same clock are
        stored in the same transaction, and on_commit follows both.
        """
        with transaction.atomic():
            candles = self._finalize(self.aggregator.close_until(now))
            windows = book.finalize_due(now) if book is not None else 0
        self._committed(candles, woke=windows > 0)
        return candles

    def flush(self) -> list[Candle]:
        """End of input: finalize every open window."""
        with transaction.atomic():
            candles = self._finalize(self.aggregator.close_all())
        self._committed(candles)
        return candles

    def _finalize(self, bars: list[Bar]) -> list[Candle]:
        if not bars:
            return []
        check_volume(bars, self.interval_s)
        candles = [candle_from_bar(self.market, bar) for bar in bars]
        upsert(Candle, candles, ["market", "interval_s", "start"], CANDLE_FIELDS)
        self.stats.candles += len(candles)
        transaction.on_commit(partial(prometheus.count, prometheus.CANDLES, self.market.name, len(candles)))
        return candles

    def _amend(self, late: dict[int, int]) -> list[Candle]:
        """Recompute late trades' windows from the stored trades (already including them).

        Returns the changed candles in window order: each amended one and the
        empty ones after it, which carry its new close.
        """
        interval = self.interval_s
        # Late windows may lie up to CANDLE_MAX_LATE_S apart: read the trades between them as a stream, keep theirs.
        rows = Trade.objects.filter(
            market=self.market, ts__gte=epoch_to_datetime(min(late)), ts__lt=epoch_to_datetime(max(late) + interval)
        ).values_list(*Tick.__slots__)
        ticks = (Tick(*row) for row in rows.iterator(chunk_size=10_000))
        bars = bars_from_ticks((t for t in ticks if window_start(t.ts, interval) in late), interval)
        check_volume(list(bars.values()), interval)
        changed: dict = {}
        for start, count in sorted(late.items()):
            candle = candle_from_bar(self.market, bars[start])
            values = {name: getattr(candle, name) for name in CANDLE_FIELDS} | {"amend_pending": True}
            Candle.objects.update_or_create(
                market=self.market, interval_s=interval, start=candle.start, defaults=values
            )
            stored = Candle.objects.filter(market=self.market, interval_s=interval, start=candle.start)
            stored.update(amended=F("amended") + count)
            Market.objects.filter(pk=self.market.pk).update(late_trades=F("late_trades") + count)
            changed[candle.start] = stored.get()
            changed.update((c.start, c) for c in self._reflatten_after(candle))
            log.info("%s: %d late trade(s) amended the %s candle", self.market, count, candle.start.isoformat())
        self.stats.amended += sum(late.values())
        transaction.on_commit(partial(prometheus.count, prometheus.LATE_TRADES, self.market.name, sum(late.values())))
        if self.aggregator.last_final is not None:
            last = Candle.objects.get(
                market=self.market, interval_s=interval, start=epoch_to_datetime(self.aggregator.last_final)
            )
            self.aggregator.last_close = last.close
        return [changed[start] for start in sorted(changed)]

    def _reflatten_after(self, candle: Candle) -> list[Candle]:
        """Empty candles right after an amended one carry its (new) close; returns them."""
        later = Candle.objects.filter(market=self.market, interval_s=self.interval_s, start__gt=candle.start)
        next_traded = later.filter(trades__gt=0).order_by("start").values_list("start", flat=True).first()
        empties = later.filter(trades=0)
        if next_traded is not None:
            empties = empties.filter(start__lt=next_traded)
        c = candle.close
        empties.update(open=c, high=c, low=c, close=c, amend_pending=True)
        return list(empties.order_by("start"))

    def _committed(self, candles: list[Candle], amended: list[Candle] | None = None, woke: bool = False) -> None:
        if (candles or amended or woke) and self.on_commit is not None:
            self.on_commit()
