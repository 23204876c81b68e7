"""Predictions served at each candle close, scored once their target time has passed."""

from __future__ import annotations

from django.db import models

from markets.models import PRICE, Market


class Prediction(models.Model):
    """The price expected at target_time, made at made_at (the end of the window just closed).

    model is null when no model was active: the prediction is then persistence
    (price = last close) and algorithm says so.
    """

    # No index of its own: the composite indexes below start with market, and a lone market
    # index tempts the planner into scanning a whole market when its statistics are stale.
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="predictions", db_index=False)
    interval_s = models.PositiveIntegerField()
    horizon = models.PositiveIntegerField(help_text="in candle intervals")
    made_at = models.DateTimeField(help_text="end of the window whose close the prediction starts from")
    target_time = models.DateTimeField()
    base_close = models.DecimalField(**PRICE, help_text="close at made_at: the persistence forecast")
    price = models.DecimalField(**PRICE)
    lower = models.DecimalField(**PRICE, help_text="80 % interval")
    upper = models.DecimalField(**PRICE, help_text="80 % interval")
    model = models.ForeignKey(
        "modeling.ModelArtifact", on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions"
    )
    model_version = models.PositiveIntegerField(null=True, blank=True)
    algorithm = models.CharField(max_length=64)
    latency_ms = models.FloatField(help_text="time to compute the prediction")
    realized = models.DecimalField(**PRICE, null=True, blank=True, help_text="close at target_time")
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "horizon", "made_at"], name="prediction_unique"),
        ]
        indexes = [
            models.Index(fields=["market", "interval_s", "target_time"]),
            models.Index(fields=["market", "made_at"]),
        ]
        ordering = ["market", "made_at"]

    def __str__(self) -> str:
        return f"{self.market} {self.made_at:%Y-%m-%d %H:%M:%S} +{self.horizon} {self.price}"
