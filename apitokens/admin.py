"""Admin → API tokens: create one (its key shown once, on the page that answers the form), rotate, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from apitokens.models import ApiToken


def key_page(request, admin_site, tokens: list[ApiToken], done: str) -> TemplateResponse:
    """The one page that shows new keys; never cached, never stored (only digests are)."""
    context = {
        **admin_site.each_context(request),
        "title": f"API token {done}",
        "tokens": tokens,
        "opts": ApiToken._meta,
    }
    response = TemplateResponse(request, "admin/apitokens/apitoken/key.html", context)
    response["Cache-Control"] = "no-store"
    return response


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name", "expires"]

    def clean(self):
        # The database's constraint (a live name once per user) reads `revoked`, which is not on the form, so
        # Django's own validation skips it: checked here, as an error on the name.
        data = super().clean()
        user = data.get("user", self.instance.user if self.instance.user_id else None)  # read-only once made
        others = ApiToken.objects.filter(user=user, name=data.get("name"), revoked__isnull=True)
        if user and self.instance.revoked is None and others.exclude(pk=self.instance.pk).exists():
            self.add_error("name", ApiToken._meta.constraints[0].violation_error_message)
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "user", "key_starts", "created", "expires", "state"]
    list_filter = [("revoked", admin.EmptyFieldListFilter), "user"]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["key_starts", "created", "revoked"]
    actions = ["rotate", "revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:  # adding: the key is made on save
            return ["user", "name", "expires"]
        return ["user", "name", "key_starts", "created", "expires", "revoked"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["user"] if obj is not None else [])

    @admin.display(description="key starts")
    def key_starts(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        return token.state()

    def save_model(self, request, obj: ApiToken, form, change: bool) -> None:
        if not change:
            obj.set_key()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj: ApiToken, post_url_continue=None):
        return key_page(request, self.admin_site, [obj], "created")

    @admin.action(description="Rotate the key of the selected tokens (each new key is shown once)")
    def rotate(self, request, queryset):
        tokens = list(queryset.filter(revoked__isnull=True))
        if len(tokens) < queryset.count():
            self.message_user(request, "Revoked tokens keep their state: create a new token instead.", messages.WARNING)
        if not tokens:
            return None
        for token in tokens:
            token.rotate()
        return key_page(request, self.admin_site, tokens, "keys rotated")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked__isnull=True):  # one by one: each save forgets it in this process
            token.revoke()
            count += 1
        self.message_user(request, f"Revoked {count} token(s); other processes refuse them within API_TOKEN_CACHE_S.")
