"""/healthz component and /metrics part: each market's pipeline step keeps up and is not failing."""

from core.health import register
from monitoring import collector
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


@collector.register
def step_metrics(markets) -> list:
    """/metrics: each market's step, failures in a row and the time of its last success."""
    failing = collector.Family("cryptopred_step_consecutive_failures", "Failures of the step in a row", ["market"])
    success = collector.Family("cryptopred_step_last_success_timestamp_seconds", "Last successful step", ["market"])
    for status in StepStatus.objects.select_related("market"):
        failing.add(status.market.name, status.consecutive_failures)
        success.add(status.market.name, collector.ts(status.last_success_at))
    return [failing.metric, success.metric]
