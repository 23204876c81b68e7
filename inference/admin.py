from django.contrib import admin

from core import horizons
from inference.metrics import live_metrics
from inference.models import Prediction
from markets.models import Market


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    """Predictions are written by the pipeline only; the change list shows each market's live metrics."""

    list_display = [
        "market",
        "made_at",
        "target_time",
        "target",
        "price",
        "lower",
        "upper",
        "realized",
        "p_up",
        "direction_model",
        "algorithm",
        "model",
    ]
    list_filter = ["market", "algorithm", "target", "direction_model", "horizon"]
    list_select_related = ["market", "model"]
    date_hierarchy = "made_at"
    change_list_template = "admin/inference/prediction/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        metrics = [live_metrics(market, h) for market in Market.objects.all() for h in horizons.configured()]
        return super().changelist_view(request, {**(extra_context or {}), "live_metrics": metrics})
