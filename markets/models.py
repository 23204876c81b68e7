"""Markets, their raw trades and the OHLC candles built from them."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

PRICE = {"max_digits": 30, "decimal_places": 12}
# A window's volume adds up trades' quantities (each below 1e18, markets.trades.ticks.MAX_QTY): 1e10 such
# trades in one window before it no longer fits.
VOLUME = {"max_digits": 40, "decimal_places": 12}


class Market(models.Model):
    """One instrument on one exchange, named EXCHANGE:BASE-QUOTE (e.g. kraken:ETH-USD)."""

    class StreamState(models.TextChoices):
        STOPPED = "stopped"
        CONNECTING = "connecting"
        LIVE = "live"
        RECONNECTING = "reconnecting"
        BACKFILLING = "backfilling"
        REPLAY = "replay"
        ERROR = "error"

    exchange = models.CharField(max_length=32)
    base = models.CharField(max_length=16)
    quote = models.CharField(max_length=16)
    symbol = models.CharField(max_length=64, help_text="the exchange's own symbol, e.g. ETH/USD on Kraken WS v2")
    enabled = models.BooleanField(
        default=False, help_text="stream live trades (exchanges with a live source) and list on the overview"
    )
    interval_s = models.PositiveIntegerField(default=10, help_text="candle interval in seconds")
    stream_state = models.CharField(max_length=16, choices=StreamState.choices, default=StreamState.STOPPED)
    stream_detail = models.CharField(max_length=500, blank=True)
    stream_updated_at = models.DateTimeField(null=True, blank=True)
    last_trade_at = models.DateTimeField(null=True, blank=True)
    late_trades = models.PositiveBigIntegerField(default=0, help_text="trades that arrived after their window closed")
    backfill_cursor = models.CharField(max_length=64, blank=True, help_text="REST resume cursor")
    book_depth = models.PositiveIntegerField(default=0, help_text="order-book levels per side kept (0: no book)")
    book_updated_at = models.DateTimeField(null=True, blank=True, help_text="time of the last order-book change")
    book_checksum_failures = models.PositiveIntegerField(default=0, help_text="book checksums that did not match")
    book_resyncs = models.PositiveIntegerField(default=0, help_text="times the book was fetched again from scratch")
    book_receive_stamped = models.PositiveIntegerField(
        "book receive-time stamps",
        default=0,
        help_text="book messages without an exchange time, stamped with their receive time",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "base", "quote"], name="market_unique_name"),
        ]
        ordering = ["exchange", "base", "quote"]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.base}-{self.quote}"


class Trade(models.Model):
    """A single fill as reported by the exchange; (market, trade_id) is unique.

    On TimescaleDB the unique key also holds ts (a hypertable requirement), see migration 0003.
    """

    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    # No index of its own: the composite indexes below start with market, and a lone market
    # index tempts the planner into scanning a whole market when its statistics are stale.
    # No foreign key constraint either: PostgreSQL checks one row at a time, which cost more
    # server time than the COPY itself. Only the Ingestor writes trades, for a market it
    # holds, and deleting a market deletes its trades (Django's cascade).
    market = models.ForeignKey(
        Market, on_delete=models.CASCADE, related_name="trades", db_index=False, db_constraint=False
    )
    trade_id = models.BigIntegerField()
    ts = models.DateTimeField()
    price = models.DecimalField(**PRICE)
    qty = models.DecimalField(**PRICE)
    side = models.CharField(max_length=4, choices=Side.choices, help_text="taker side")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "trade_id"], name="trade_unique_id"),
        ]
        indexes = [models.Index(fields=["market", "ts"])]

    def __str__(self) -> str:
        return f"{self.market_id}#{self.trade_id} {self.side} {self.qty}@{self.price}"


class Candle(models.Model):
    """OHLC over [start, start + interval_s), upserted as trades arrive."""

    # No index of its own: the composite indexes below start with market, and a lone market
    # index tempts the planner into scanning a whole market when its statistics are stale.
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="candles", db_index=False)
    interval_s = models.PositiveIntegerField()
    start = models.DateTimeField()
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    volume = models.DecimalField(**VOLUME)
    buy_volume = models.DecimalField(**VOLUME)
    sell_volume = models.DecimalField(**VOLUME)
    trades = models.PositiveIntegerField()
    vwap = models.DecimalField(**PRICE, null=True, blank=True)
    final = models.BooleanField(default=False)
    amended = models.PositiveIntegerField(default=0, help_text="late trades applied after finalization")
    # Set in the transaction that amends a final candle, cleared by the pipeline step once the
    # feature rows and scores that read it are refreshed: an outbox that survives a crash.
    amend_pending = models.BooleanField(default=False, help_text="amended; downstream refresh not done yet")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "start"], name="candle_unique_window"),
        ]
        indexes = [
            models.Index(fields=["market"], condition=models.Q(amend_pending=True), name="candle_amend_pending"),
        ]
        ordering = ["market", "interval_s", "start"]

    def __str__(self) -> str:
        return f"{self.market_id} {self.interval_s}s {self.start:%Y-%m-%dT%H:%M:%SZ}"


class BookWindow(models.Model):
    """Order-book features over [start, start + interval_s) (markets/book/orderbook.py BookWindows).

    Top of book, mid and microprice as of the window end; OFI summed over the
    window's book changes; spread and L1 imbalance time-weighted over the window;
    depth imbalance over the first BOOK_FEATURE_LEVELS levels as of the window end;
    OFI over those levels (null in windows stored before it was recorded).
    """

    # No index of its own, like Candle: the unique index below starts with market.
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="book_windows", db_index=False)
    interval_s = models.PositiveIntegerField()
    start = models.DateTimeField()
    bid_price = models.DecimalField(**PRICE)
    bid_qty = models.DecimalField(**PRICE)
    ask_price = models.DecimalField(**PRICE)
    ask_qty = models.DecimalField(**PRICE)
    mid = models.DecimalField(**PRICE)
    microprice = models.DecimalField(**PRICE)
    ofi = models.FloatField(help_text="best-level order-flow imbalance summed over the window")
    spread_tw = models.FloatField(help_text="time-weighted ask - bid")
    imbalance_tw = models.FloatField(help_text="time-weighted (qb - qa) / (qb + qa) at the best levels")
    depth_imbalance = models.FloatField(help_text="(bid qty - ask qty) / total over the first N levels at the end")
    updates = models.PositiveIntegerField(help_text="book changes in the window")
    ofi_levels = models.FloatField(
        null=True, blank=True, help_text="order-flow imbalance over the first N levels summed over the window"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "start"], name="bookwindow_unique_window"),
        ]
        ordering = ["market", "interval_s", "start"]

    def __str__(self) -> str:
        return f"{self.market_id} {self.interval_s}s {self.start:%Y-%m-%dT%H:%M:%SZ}"

    @property
    def spread(self) -> Decimal:
        return self.ask_price - self.bid_price

    @property
    def imbalance(self) -> float:
        """L1 imbalance at the window end: (bid qty - ask qty) / (both)."""
        total = self.bid_qty + self.ask_qty
        return float((self.bid_qty - self.ask_qty) / total) if total else 0.0
