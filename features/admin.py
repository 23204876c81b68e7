from django.contrib import admin

from features.models import FeatureRow


@admin.register(FeatureRow)
class FeatureRowAdmin(admin.ModelAdmin):
    list_display = ["market", "interval_s", "start", "version", "close", "mid"]
    list_filter = ["market", "interval_s", "version"]
    date_hierarchy = "start"
    readonly_fields = ["market", "interval_s", "start", "version", "values", "close", "mid", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False
