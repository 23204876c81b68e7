import logging

from django.http import JsonResponse

from core.health import run_checks

log = logging.getLogger(__name__)
_last_failing: list[str] = []  # this process's last reported failures: a change is logged, not every poll


def healthz(request):
    """200 while every component is up (status ok, or degraded when one says so: no live feed), else 503 (fail).

    Liveness probes read the code; status and the components say what is wrong.
    """
    global _last_failing
    ok, components = run_checks()
    failing = [name for name, result in components.items() if not result["ok"]]
    degraded = [name for name, result in components.items() if result["ok"] and result.get("degraded")]
    status = "fail" if failing else "degraded" if degraded else "ok"
    body = {"status": status, "failing": failing, "degraded": degraded, "components": components}
    response = JsonResponse(body, status=200 if ok else 503)
    if failing != _last_failing:
        log.log(logging.WARNING if failing else logging.INFO, "healthz: failing %s", ", ".join(failing) or "none")
        _last_failing = failing
    # A 503 here is an answer, not a server error: without this, Django logs an ERROR per poll while starting.
    response._has_been_logged = True
    return response
