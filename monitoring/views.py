"""GET /metrics: the Prometheus text format of every process, plus the system's state read at scrape time.

Readable from loopback addresses, and from anywhere with "Authorization: Bearer
<METRICS_TOKEN>" when that setting is set (compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core.prometheus import AllProcesses
from monitoring.collector import SystemCollector


def loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def may_scrape(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    return loopback(request.META.get("REMOTE_ADDR") or "")


@require_safe
def metrics(request):
    if not may_scrape(request):
        hint = "with Authorization: Bearer <METRICS_TOKEN>" if settings.METRICS_TOKEN else "(METRICS_TOKEN is unset)"
        return HttpResponseForbidden(f"/metrics is readable from loopback only, or {hint}\n", content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(AllProcesses())
    registry.register(SystemCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
