from django.http import JsonResponse

from core.health import run_checks


def healthz(request):
    ok, components = run_checks()
    failing = [name for name, result in components.items() if not result["ok"]]
    body = {"status": "ok" if ok else "fail", "failing": failing, "components": components}
    return JsonResponse(body, status=200 if ok else 503)
