"""Read access: token (or session) users, and anyone when API_ANONYMOUS_READ is on. The API is read-only."""

from django.conf import settings
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import SAFE_METHODS, BasePermission


def may_read(user) -> bool:
    """Shared by REST and the websocket."""
    return settings.API_ANONYMOUS_READ or bool(user and user.is_authenticated and user.is_active)


class ReadAccess(BasePermission):
    """GET, HEAD and OPTIONS for readers; any other method is 405 (with Allow), whoever asks."""

    def has_permission(self, request, view) -> bool:
        if request.method not in SAFE_METHODS:
            raise MethodNotAllowed(request.method)
        return may_read(request.user)
