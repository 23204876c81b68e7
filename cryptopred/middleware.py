"""Response headers that Django's SecurityMiddleware does not set."""

from __future__ import annotations

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin


class ContentSecurityPolicy(MiddlewareMixin):
    """Content-Security-Policy (settings.CONTENT_SECURITY_POLICY) on every response that has none of its own.

    The pages load only this site's static files (no inline script or style, no
    other host), so a script injected into a page would not run.
    """

    def process_response(self, request, response):
        if settings.CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
