"""Operating the models: drift reports and the shadow predictions of challengers."""

from __future__ import annotations

from django.db import models

from markets.models import PRICE, Market
from modeling.models import ModelArtifact


class DriftReport(models.Model):
    """One drift check of a market at one horizon (monitoring.drift): features against the served model's
    training window, and the live squared-error stream of its scored predictions."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="drift_reports")
    horizon = models.PositiveIntegerField(default=1, help_text="candle intervals ahead of the predictions checked")
    computed_at = models.DateTimeField(auto_now_add=True)
    reference = models.ForeignKey(
        ModelArtifact,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="drift_reports",
        help_text="the model whose training window is the reference (the active one, else the newest)",
    )
    reference_rows = models.PositiveIntegerField(default=0)
    recent_rows = models.PositiveIntegerField(default=0)
    recent_start = models.DateTimeField(null=True, blank=True)
    recent_end = models.DateTimeField(null=True, blank=True)
    psi = models.JSONField(default=dict, help_text="population stability index per feature")
    max_psi = models.FloatField(null=True, blank=True)
    max_psi_feature = models.CharField(max_length=64, blank=True)
    feature_drift = models.BooleanField(
        default=False, help_text="at least DRIFT_FEATURE_SHARE of the features have a PSI above DRIFT_PSI_THRESHOLD"
    )
    error_rows = models.PositiveIntegerField(default=0, help_text="scored predictions fed to ADWIN")
    error_drift = models.BooleanField(
        default=False, help_text="ADWIN detected a change of the squared errors' level by DRIFT_ERROR_RATIO or more"
    )
    error_change_at = models.DateTimeField(
        null=True, blank=True, help_text="made_at of the prediction at which the last change was detected"
    )
    error_mean_before = models.FloatField(null=True, blank=True, help_text="mean squared error (bp²) before")
    error_mean_after = models.FloatField(null=True, blank=True, help_text="mean squared error (bp²) since")
    retrain_queued = models.BooleanField(default=False, help_text="an early retraining was queued (DRIFT_RETRAIN)")
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-computed_at"]
        indexes = [
            models.Index(fields=["market", "-computed_at"]),
            models.Index(fields=["market", "horizon", "-computed_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.market} +{self.horizon} drift {self.computed_at:%Y-%m-%d %H:%M:%S}"

    @property
    def drifted(self) -> bool:
        return self.feature_drift or self.error_drift


class ShadowPrediction(models.Model):
    """A challenger's prediction of a window the served model also predicted: stored and scored, never served."""

    artifact = models.ForeignKey(ModelArtifact, on_delete=models.CASCADE, related_name="shadow_predictions")
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="shadow_predictions", db_index=False)
    interval_s = models.PositiveIntegerField()
    horizon = models.PositiveIntegerField()
    made_at = models.DateTimeField()
    target_time = models.DateTimeField()
    target = models.CharField(max_length=8, default="close", help_text="the challenger's target: close or mid")
    base_close = models.DecimalField(**PRICE, help_text="the target's price at made_at: the persistence forecast")
    price = models.DecimalField(**PRICE)
    lower = models.DecimalField(**PRICE)
    upper = models.DecimalField(**PRICE)
    latency_ms = models.FloatField()
    realized = models.DecimalField(**PRICE, null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["artifact", "made_at"], name="shadow_unique")]
        indexes = [
            models.Index(fields=["market", "interval_s", "target_time"]),
            models.Index(fields=["artifact", "made_at"]),
        ]

    def __str__(self) -> str:
        return f"shadow {self.artifact_id} {self.made_at:%Y-%m-%d %H:%M:%S} {self.price}"


class Challenger(ModelArtifact):
    """A model the gate did not promote, scored live in shadow next to the champion (admin only)."""

    class Meta:
        proxy = True
        verbose_name = "challenger"
