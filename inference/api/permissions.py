"""Read access: token (or session) users, and anyone when API_ANONYMOUS_READ is on."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


def may_read(user) -> bool:
    """Shared by REST and the websocket."""
    return settings.API_ANONYMOUS_READ or bool(user and user.is_authenticated and user.is_active)


class ReadAccess(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS and may_read(request.user)
