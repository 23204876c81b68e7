"""Counts every answer Django gives (cryptopred_http_requests_total), by view name and status.

API reads answered by the read cache (inference.readcache) never reach Django: it counts its own.
"""

from __future__ import annotations

from core import prometheus


class RequestMetrics:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        handler = (match.view_name if match is not None else "") or "unmatched"
        prometheus.HTTP_REQUESTS.labels(handler, str(response.status_code)).inc()
        return response
