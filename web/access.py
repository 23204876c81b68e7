"""Who may read the trader pages: logged-in users, or anyone when anonymous read is on."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login


def read_access(view):
    """Like login_required, but the same API_ANONYMOUS_READ switch as the API and websocket opens it."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if settings.API_ANONYMOUS_READ or request.user.is_authenticated:
            return view(request, *args, **kwargs)
        return redirect_to_login(request.get_full_path())

    return wrapper
