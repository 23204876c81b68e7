"""How long after its end a live window waits for late trades before it is finalized.

Fixed: CANDLE_GRACE_S. Adaptive (the default): the feed's recent lag (exchange
trade time → received here) at a high quantile plus a margin, at most
CANDLE_GRACE_S — a prompt feed gets its candles (and predictions) within
milliseconds of the window end; a lagging one waits as long as it needs to.
Trades that still arrive after their window closed amend it (and are counted).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from django.conf import settings

from core import prometheus
from markets.trades.candles import Tick

SAMPLES = 2000  # the most recent lags kept
MIN_SAMPLES = 20  # fewer: the fixed grace still applies
RECOMPUTE_EVERY_S = 1.0
HISTORY_FACTOR = 10  # a trade older than this many max graces is history (snapshot, gap fill), not feed lag


class Grace:
    def __init__(self, maximum: float | None = None, adaptive: bool | None = None, market: str = ""):
        self.maximum = settings.CANDLE_GRACE_S if maximum is None else maximum
        self.adaptive = settings.CANDLE_GRACE_MODE == "adaptive" if adaptive is None else adaptive
        self.quantile = settings.CANDLE_GRACE_QUANTILE
        self.margin = settings.CANDLE_GRACE_MARGIN_S
        self.lags: deque[float] = deque(maxlen=SAMPLES)
        self.value = self.maximum
        self.computed_at = 0.0
        self.histogram = prometheus.FEED_LAG.labels(market) if market else None  # /metrics

    def observe(self, ticks: Iterable[Tick], received: float | None = None) -> None:
        """Record the lag of trades just received from the live feed."""
        received = time.time() if received is None else received
        horizon = self.maximum * HISTORY_FACTOR
        for tick in ticks:
            lag = received - tick.ts.timestamp()
            if lag <= horizon:
                self.lags.append(max(0.0, lag))
                if self.histogram is not None:
                    self.histogram.observe(max(0.0, lag))

    def seconds(self) -> float:
        """The grace to apply now."""
        if not self.adaptive or len(self.lags) < MIN_SAMPLES:
            return self.maximum
        now = time.monotonic()
        if now - self.computed_at >= RECOMPUTE_EVERY_S:
            ordered = sorted(self.lags)
            high = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
            self.value = min(self.maximum, high + self.margin)
            self.computed_at = now
        return self.value
