"""/healthz component: each market's pipeline step keeps up and is not failing."""

from core.health import register
from pipeline.models import StepStatus

FAILING_AFTER = 3  # consecutive failed attempts before the component fails


@register("pipeline")
def check_pipeline() -> dict:
    markets = {}
    for status in StepStatus.objects.select_related("market"):
        markets[status.market.name] = {
            "ok": status.consecutive_failures < FAILING_AFTER,
            "done_until": status.done_until.isoformat() if status.done_until else None,
            "predictions": status.predictions,
            "skipped": status.skipped,
            "failures": status.failures,
            "last_error": status.last_error if status.consecutive_failures else "",
        }
    return {"ok": all(m["ok"] for m in markets.values()), "markets": markets}
