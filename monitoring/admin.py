"""Admin: drift reports, and the challengers in shadow next to the champion with a one-click promotion."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.formatting import NONE, bps, count, model_label, percent
from modeling import registry, serialization
from modeling.models import ModelArtifact
from monitoring import challengers
from monitoring.models import Challenger, DriftReport


@admin.register(DriftReport)
class DriftReportAdmin(admin.ModelAdmin):
    list_display = [
        "computed_at",
        "market",
        "reference",
        "largest_psi",
        "feature_drift",
        "error_drift",
        "retrain_queued",
    ]
    list_filter = ["market", "feature_drift", "error_drift", "retrain_queued"]
    readonly_fields = [f.name for f in DriftReport._meta.fields]

    @admin.display(description="largest PSI")
    def largest_psi(self, obj):
        return NONE if obj.max_psi is None else f"{obj.max_psi:.3f} ({obj.max_psi_feature})"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # computed by the drift check: viewed, never edited


def _rmse_bp(side: dict | None) -> str:
    return bps(side and side.get("rmse_bps"))


def _p(value: float | None) -> str:
    return NONE if value is None else f"{value:.3g}"


class ChallengerAdmin(admin.ModelAdmin):
    """Models the gate rejected, each scored in shadow: live RMSE next to the champion and persistence."""

    list_display = ["label", "market", "in_shadow", "windows", "challenger_rmse", "champion_rmse", "p_value"]
    list_filter = ["market"]
    actions = ["promote"]
    change_form_template = "admin/monitoring/challenger/change_form.html"

    def get_queryset(self, request):
        shadowed = ModelArtifact.objects.filter(shadow_predictions__isnull=False).values("pk")
        return super().get_queryset(request).filter(pk__in=shadowed).select_related("market").defer("artifact")

    def comparison(self, obj) -> dict:
        cache = getattr(self, "_comparisons", None)
        if cache is None:
            cache = self._comparisons = {}
        if obj.pk not in cache:
            cache[obj.pk] = challengers.compare(obj)
        return cache[obj.pk]

    @admin.display(description="challenger")
    def label(self, obj):
        return format_html('{} <span class="quiet">#{} · {}</span>', model_label(obj), obj.pk, obj.status)

    @admin.display(description="in shadow", boolean=True)
    def in_shadow(self, obj):
        return obj.pk in {a.pk for a in challengers.current(obj.market, obj.interval_s, obj.horizon, timezone.now())}

    @admin.display(description="windows")
    def windows(self, obj):
        return count(self.comparison(obj)["windows"])

    @admin.display(description="live RMSE bp challenger / persistence")
    def challenger_rmse(self, obj):
        c = self.comparison(obj)
        return f"{_rmse_bp(c.get('challenger'))} / {_rmse_bp(c.get('persistence'))}"

    @admin.display(description="live RMSE bp champion")
    def champion_rmse(self, obj):
        return _rmse_bp(self.comparison(obj).get("champion"))

    @admin.display(description="p vs champion (DM)")
    def p_value(self, obj):
        return _p(self.comparison(obj).get("p_vs_champion"))

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        custom = [
            path(
                "<int:object_id>/promote/",
                self.admin_site.admin_view(self.promote_view),
                name="monitoring_challenger_promote",
            )
        ]
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = get_object_or_404(Challenger, pk=object_id)
        c = self.comparison(obj)
        rows = []
        for name, side in (("Challenger", c.get("challenger")), ("Champion", c.get("champion"))):
            rows.append((name, side))
        rows.append(("Persistence", c.get("persistence")))
        table = [
            {
                "name": name,
                "rmse": _rmse_bp(side),
                "mae": bps(side and side.get("mae_bps")),
                "direction": percent(side and side.get("directional_accuracy")),
                "coverage": percent(side and side.get("coverage_80")),
            }
            for name, side in rows
        ]
        context = {
            **(extra_context or {}),
            "title": f"{model_label(obj)} ({obj.market}) in shadow",
            "comparison": c,
            "table": table,
            "p_vs_champion": _p(c.get("p_vs_champion")),
            "p_vs_persistence": _p(c.get("p_vs_persistence")),
            "champion": ", ".join(c.get("champion_served_by") or []) or NONE,
            "promote_url": reverse("admin:monitoring_challenger_promote", args=[obj.pk])
            if self.has_change_permission(request, obj)
            else None,
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, context)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ModelArtifact._meta.fields if f.name != "artifact"]

    exclude = ["artifact"]

    def promote_view(self, request, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        get_object_or_404(Challenger, pk=object_id)
        self.promote(request, Challenger.objects.filter(pk=object_id))
        return HttpResponseRedirect(reverse("admin:monitoring_challenger_change", args=[object_id]))

    @admin.action(description="Promote to active (retires the current active model)")
    def promote(self, request, queryset):
        for artifact in queryset:
            c = self.comparison(artifact)
            reason = (
                f"promoted from shadow by {request.user}: live RMSE {_rmse_bp(c.get('challenger'))} bp vs champion "
                f"{_rmse_bp(c.get('champion'))} bp over {c['windows']} windows (p {_p(c.get('p_vs_champion'))})"
            )
            try:
                registry.promote(artifact, reason, request.user, action="promote challenger")
            except (registry.RegistryError, serialization.ArtifactError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{artifact}: promoted", messages.SUCCESS)


admin.site.register(Challenger, ChallengerAdmin)
