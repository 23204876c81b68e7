"""What the pipeline step of each market has done and what went wrong (admin, /healthz)."""

from __future__ import annotations

from django.db import models

from markets.models import Market


class StepStatus(models.Model):
    """Counters and the last outcome of one market's pipeline step, over all processes."""

    market = models.OneToOneField(Market, on_delete=models.CASCADE, related_name="step_status")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    done_until = models.DateTimeField(null=True, blank=True, help_text="last window with features")
    predicted_until = models.DateTimeField(null=True, blank=True, help_text="last window predicted or skipped")
    features = models.PositiveBigIntegerField(default=0, help_text="feature rows computed")
    predictions = models.PositiveBigIntegerField(default=0)
    skipped = models.PositiveBigIntegerField(default=0, help_text="windows not predicted: target time had passed")
    scored = models.PositiveBigIntegerField(default=0)
    refreshed = models.PositiveBigIntegerField(default=0, help_text="amended candles refreshed downstream")
    failures = models.PositiveBigIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "step statuses"

    def __str__(self) -> str:
        return f"{self.market} step"
