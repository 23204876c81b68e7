"""Predictions served at each candle close, scored once their target time has passed."""

from __future__ import annotations

from django.db import models

from markets.models import PRICE, Market
from modeling.direction import MODEL_NAMES


class Prediction(models.Model):
    """The price expected at target_time, made at made_at (the end of the window just closed).

    model is null when no model was active: the prediction is then persistence
    (price = last close) and algorithm says so. target is the price predicted:
    the last trade's close or the order book's mid (base_close is then the mid
    at made_at, and realized the mid at target_time).

    p_up is the probability that the target is higher rather than lower at
    target_time given that it moves, p_move that it moves at all; direction_source
    says whether a model or the base rate of the training window gave p_up,
    direction_model which one (microprice, logistic, boosted or base rate),
    and p_up_base is that base rate (null before any training run).
    """

    # No index of its own: the composite indexes below start with market, and a lone market
    # index tempts the planner into scanning a whole market when its statistics are stale.
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="predictions", db_index=False)
    interval_s = models.PositiveIntegerField()
    horizon = models.PositiveIntegerField(help_text="in candle intervals")
    made_at = models.DateTimeField(help_text="end of the window whose close the prediction starts from")
    target_time = models.DateTimeField()
    target = models.CharField(
        max_length=8, choices=[("close", "close"), ("mid", "mid")], default="close", help_text="the price predicted"
    )
    base_close = models.DecimalField(**PRICE, help_text="the target's price at made_at: the persistence forecast")
    price = models.DecimalField(**PRICE)
    lower = models.DecimalField(**PRICE, help_text="80 % interval")
    upper = models.DecimalField(**PRICE, help_text="80 % interval")
    model = models.ForeignKey(
        "modeling.ModelArtifact", on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions"
    )
    model_version = models.PositiveIntegerField(null=True, blank=True)
    algorithm = models.CharField(max_length=64)
    latency_ms = models.FloatField(help_text="time to compute the prediction")
    p_up = models.FloatField(null=True, blank=True, help_text="P(target up | it moves)")
    p_move = models.FloatField(null=True, blank=True, help_text="P(target moves)")
    p_up_base = models.FloatField(null=True, blank=True, help_text="the base rate of P(up) in the training window")
    direction_source = models.CharField(
        max_length=16,
        choices=[("model", "model"), ("base rate", "base rate")],
        blank=True,
        help_text="what gave p_up (empty: no training run yet)",
    )
    direction_model = models.CharField(
        max_length=16,
        choices=[(name, name) for name in MODEL_NAMES],
        blank=True,
        help_text="the direction model that gave p_up, or base rate (empty: no training run yet)",
    )
    realized = models.DecimalField(
        **PRICE, null=True, blank=True, help_text="the target's price at target_time (close or mid)"
    )
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "horizon", "made_at"], name="prediction_unique"),
        ]
        indexes = [
            models.Index(fields=["market", "interval_s", "target_time"]),
            models.Index(fields=["market", "made_at"]),
            # Each model's newest scored predictions at a horizon (live metrics), read in order without a sort.
            models.Index(
                fields=["market", "interval_s", "horizon", "target", "model", "-made_at"],
                name="prediction_model_newest",
            ),
        ]
        ordering = ["market", "made_at"]

    def __str__(self) -> str:
        return f"{self.market} {self.made_at:%Y-%m-%d %H:%M:%S} +{self.horizon} {self.price}"
