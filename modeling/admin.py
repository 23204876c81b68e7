"""Admin: browse models with their metrics; promote, roll back and retire (each recorded in ModelEvent).

The three changes are list actions and buttons on a model's page; both run the same action methods, so each is
recorded the same way. A model's page is read-only: artifacts come from training, never from a form.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.formatting import bps, model_label, percent
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
    return (artifact.metrics.get(side) or {}).get(key)


def _pair(artifact: ModelArtifact, key: str) -> str:
    """ "model / persistence" of a validation error in basis points, one format for both."""
    return f"{bps(_metric(artifact, 'model', key))} / {bps(_metric(artifact, 'persistence', key))}"


def flatten(value, path: str = "") -> list[tuple[str, str]]:
    """(dotted path, shown value) of each leaf of nested metrics; floats to 6 significant digits."""
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in flatten(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, float):
        return [(path, f"{value:.6g}")]
    if isinstance(value, list) and not any(isinstance(item, dict | list) for item in value):
        return [(path, ", ".join(f"{item:.6g}" if isinstance(item, float) else str(item) for item in value))]
    if isinstance(value, list):
        return [row for i, item in enumerate(value) for row in flatten(item, f"{path}[{i}]")]
    return [(path, "null" if value is None else str(value))]


BUTTONS = {"promote": "Promote to active", "rollback": "Roll back to the previous model", "retire": "Retire"}


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    # Few, compact columns so the metrics are never clipped at laptop width; everything else is on the model's page.
    list_display = [
        "label",
        "market",
        "status",
        "validation_rmse",
        "validation_mae",
        "direction",
        "coverage",
        "up_down",
        "created_at",
    ]
    list_display_links = ["label"]
    list_filter = ["status", "algorithm", "target", "direction_model", "market", "interval_s", "horizon"]
    search_fields = ["reason", "algorithm"]
    readonly_fields = [
        "metrics_table" if f.name == "metrics" else f.name for f in ModelArtifact._meta.fields if f.name != "artifact"
    ]
    exclude = ["artifact", "metrics"]
    inlines = [ModelEventInline]
    actions = ["promote", "rollback", "retire"]
    change_form_template = "admin/modeling/modelartifact/change_form.html"

    @admin.display(description="model", ordering="version")
    def label(self, obj):
        return format_html(
            '{} <span class="quiet">#{} · {} s +{}</span>', model_label(obj), obj.pk, obj.interval_s, obj.horizon
        )

    @admin.display(description="validation RMSE bp, model / persistence")
    def validation_rmse(self, obj):
        return _pair(obj, "rmse_bps")

    @admin.display(description="validation MAE bp, model / persistence")
    def validation_mae(self, obj):
        return _pair(obj, "mae_bps")

    @admin.display(description="direction")
    def direction(self, obj):
        return percent(_metric(obj, "model", "directional_accuracy"))

    @admin.display(description="80 % coverage")
    def coverage(self, obj):
        return percent(_metric(obj, "model", "coverage_80"))

    @admin.display(description="P(up) Brier vs base rate")
    def up_down(self, obj):
        """The run's direction verdict: what its gate serves, and its walk-forward Brier next to the base rate's."""
        up = (obj.metrics.get("direction") or {}).get("up") or {}
        if up.get("brier") is None:
            return None
        return f"{obj.direction_model or obj.direction_source} · {up['brier']:.4f} vs {up['brier_reference']:.4f}"

    @admin.display(description="metrics")
    def metrics_table(self, obj):
        """The validation metrics as a table, one row per figure (its path in the stored JSON), not a JSON blob."""
        rows = flatten(obj.metrics)
        if not rows:
            return "-"
        body = format_html_join("", '<tr><th scope="row">{}</th><td>{}</td></tr>', rows)
        return format_html('<table class="metrics"><tbody>{}</tbody></table>', body)

    def has_add_permission(self, request) -> bool:
        return False  # artifacts come from training only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the registry keeps every model: retire instead

    def get_urls(self):
        custom = [
            path(
                "<int:object_id>/change-status/<str:action>/",
                self.admin_site.admin_view(self.change_status_view),
                name="modeling_modelartifact_change_status",
            )
        ]
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Read-only record: no Save buttons, but Promote / Roll back / Retire (see the change_form template).
        context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "status_buttons": [
                (name, label, reverse("admin:modeling_modelartifact_change_status", args=[object_id, name]))
                for name, label in BUTTONS.items()
            ]
            if self.has_change_permission(request)
            else [],
        }
        return super().change_view(request, object_id, form_url, context)

    def change_status_view(self, request, object_id: int, action: str):
        """A button on the model's page: the list action of that name on this one model (same code, same audit)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in BUTTONS or not self.has_change_permission(request):
            raise PermissionDenied
        get_object_or_404(ModelArtifact, pk=object_id)
        getattr(self, action)(request, ModelArtifact.objects.filter(pk=object_id))
        return HttpResponseRedirect(reverse("admin:modeling_modelartifact_change", args=[object_id]))

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
