"""Admin: browse models with their metrics; promote, roll back and retire (each recorded in ModelEvent)."""

from __future__ import annotations

from django.contrib import admin, messages

from modeling import registry, serialization
from modeling.models import ModelArtifact, ModelEvent


class ModelEventInline(admin.TabularInline):
    model = ModelEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "action", "from_status", "to_status", "actor", "reason"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _metric(artifact: ModelArtifact, side: str, key: str):
    value = (artifact.metrics.get(side) or {}).get(key)
    return None if value is None else round(value, 6)


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "market",
        "interval_s",
        "horizon",
        "version",
        "target",
        "algorithm",
        "status",
        "rmse",
        "persistence_rmse",
        "directional_accuracy",
        "coverage_80",
        "direction_source",
        "direction_brier",
        "direction_accuracy",
        "created_at",
    ]
    list_filter = ["status", "algorithm", "target", "direction_source", "market", "interval_s", "horizon"]
    search_fields = ["reason", "algorithm"]
    readonly_fields = [f.name for f in ModelArtifact._meta.fields if f.name != "artifact"]
    exclude = ["artifact"]
    inlines = [ModelEventInline]
    actions = ["promote", "rollback", "retire"]

    @admin.display(description="RMSE")
    def rmse(self, obj):
        return _metric(obj, "model", "rmse")

    @admin.display(description="persistence RMSE")
    def persistence_rmse(self, obj):
        return _metric(obj, "persistence", "rmse")

    @admin.display(description="direction")
    def directional_accuracy(self, obj):
        return _metric(obj, "model", "directional_accuracy")

    @admin.display(description="80 % coverage")
    def coverage_80(self, obj):
        return _metric(obj, "model", "coverage_80")

    @admin.display(description="P(up) Brier vs base rate")
    def direction_brier(self, obj):
        up = (obj.metrics.get("direction") or {}).get("up") or {}
        if up.get("brier") is None:
            return None
        return f"{up['brier']:.4f} vs {up['brier_reference']:.4f} (p {up['p_value']:.3g})"

    @admin.display(description="P(up) accuracy vs base rate")
    def direction_accuracy(self, obj):
        up = (obj.metrics.get("direction") or {}).get("up") or {}
        if up.get("accuracy") is None:
            return None
        return f"{up['accuracy']:.1%} vs {up['accuracy_reference']:.1%}"

    def has_add_permission(self, request) -> bool:
        return False  # artifacts come from training only

    def _each(self, request, queryset, change) -> None:
        for artifact in queryset:
            try:
                change(artifact)
            except (registry.RegistryError, serialization.ArtifactError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{artifact}: done", messages.SUCCESS)

    @admin.action(description="Promote to active (retires the current active model)")
    def promote(self, request, queryset):
        self._each(request, queryset, lambda a: registry.promote(a, f"promoted by {request.user}", request.user))

    @admin.action(description="Roll back to the previously active model")
    def rollback(self, request, queryset):
        self._each(request, queryset, lambda a: registry.rollback(a.market, a.interval_s, a.horizon, request.user))

    @admin.action(description="Retire")
    def retire(self, request, queryset):
        self._each(request, queryset, lambda a: registry.retire(a, f"retired by {request.user}", request.user))


@admin.register(ModelEvent)
class ModelEventAdmin(admin.ModelAdmin):
    list_display = ["at", "artifact", "action", "from_status", "to_status", "actor", "reason"]
    list_filter = ["action", "to_status"]
    readonly_fields = list_display

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
