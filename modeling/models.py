"""The model registry: trained artifacts with their metrics, status and audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from markets.models import Market


class ModelArtifact(models.Model):
    """One trained model for (market, interval, horizon), serialized with skops.

    At most one artifact per (market, interval_s, horizon) is active; the
    promotion gate and the admin actions in modeling.registry keep it so.
    Every artifact also carries its run's direction forecast (modeling.direction),
    served by its own gate whether or not the price model is active.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        REJECTED = "rejected"
        RETIRED = "retired"

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="model_artifacts")
    interval_s = models.PositiveIntegerField()
    horizon = models.PositiveIntegerField(help_text="in candle intervals")
    feature_version = models.CharField(max_length=16)
    target = models.CharField(
        max_length=8,
        choices=[("close", "close"), ("mid", "mid")],
        default="close",
        help_text="the price predicted: the last trade's close, or the order book's mid",
    )
    algorithm = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    train_start = models.DateTimeField()
    train_end = models.DateTimeField()
    metrics = models.JSONField(
        default=dict, help_text='{"model": {...}, "persistence": {...}} on the validation window'
    )
    artifact = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    reason = models.TextField(blank=True)
    direction_source = models.CharField(
        max_length=16,
        blank=True,
        help_text="the direction gate's verdict on this run's P(up) model: model (beats the base rate) or base rate",
    )
    direction_model = models.CharField(
        max_length=16,
        blank=True,
        help_text="what this run serves for P(up): microprice, logistic, boosted or base rate",
    )
    version = models.PositiveIntegerField(help_text="1, 2, ... per (market, interval, horizon)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "interval_s", "horizon", "version"], name="model_unique_version"),
            models.UniqueConstraint(
                fields=["market", "interval_s", "horizon"],
                condition=models.Q(status="active"),
                name="model_one_active",
            ),
        ]
        indexes = [models.Index(fields=["market", "interval_s", "horizon", "status"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.market} {self.interval_s}s+{self.horizon} v{self.version} {self.algorithm} ({self.status})"


class ModelEvent(models.Model):
    """Audit log: every status change of an artifact, who made it and why."""

    artifact = models.ForeignKey(ModelArtifact, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.artifact}: {self.from_status} -> {self.to_status}"
