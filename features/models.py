"""The offline feature store: one row per (market, interval, window, feature-set version)."""

from __future__ import annotations

from django.db import models

from markets.models import PRICE, Market


class FeatureRow(models.Model):
    """Feature values for the window starting at start, computed from data available at its close.

    values maps feature name to float (None where the history is too short);
    close is the window's candle close (the last trade's price), and mid the
    order book's mid at the window end (feature set v2, else null): the prices
    a prediction of target "close" or "mid" starts from.
    """

    # No index of its own: the composite indexes below start with market, and a lone market
    # index tempts the planner into scanning a whole market when its statistics are stale.
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="feature_rows", db_index=False)
    interval_s = models.PositiveIntegerField()
    start = models.DateTimeField(help_text="window start")
    version = models.CharField(max_length=16, help_text="feature-set version")
    values = models.JSONField()
    close = models.DecimalField(**PRICE)
    mid = models.DecimalField(**PRICE, null=True, blank=True, help_text="book mid at the window end (v2)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "version", "start"], name="feature_row_unique"),
        ]
        ordering = ["market", "interval_s", "start"]

    def __str__(self) -> str:
        return f"{self.market} {self.interval_s}s {self.start:%Y-%m-%d %H:%M:%S} {self.version}"
