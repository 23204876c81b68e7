from django.contrib import admin

from pipeline.models import StepStatus


@admin.register(StepStatus)
class StepStatusAdmin(admin.ModelAdmin):
    list_display = [
        "market",
        "done_until",
        "predictions",
        "skipped",
        "refreshed",
        "failures",
        "consecutive_failures",
        "last_error_at",
        "last_success_at",
    ]
    readonly_fields = [f.name for f in StepStatus._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
