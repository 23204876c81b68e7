"""What /metrics reads at scrape time: the state kept in PostgreSQL and Redis, not counted by any process.

Markets and their streams, step status, Celery queue depths, the beat
heartbeat, served and trained models, live metrics per served forecaster next
to persistence (inference.metrics.live_metrics), the latest drift report and
the challengers in shadow. A part that fails (database down) is reported in
cryptopred_scrape_error{part} instead of failing the scrape.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import connections
from django.db.models import Max
from prometheus_client.core import GaugeMetricFamily

from core import horizons
from core.redis_client import get_redis
from markets.models import Market

log = logging.getLogger(__name__)
QUEUE_PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport keeps priorities 3, 6, 9 in lists name + sep + n
LIVE_FIELDS = ("rmse", "rmse_bps", "mae", "mae_bps", "directional_accuracy", "coverage_80")
TIMING_FIELDS = {  # inference.metrics' value.timing (modeling.value.timing)
    "buy_bps": "Bps of the mid saved per decision by waiting to buy on the served P(up)",
    "sell_bps": "Bps of the mid gained per decision by waiting to sell on the served P(up)",
    "rule_buy_bps": "Bps of the mid saved per decision by waiting to buy on the microprice rule",
    "rule_sell_bps": "Bps of the mid gained per decision by waiting to sell on the microprice rule",
    "oracle_buy_bps": "Bps of the mid saved per decision by waiting to buy with perfect foresight",
    "oracle_sell_bps": "Bps of the mid gained per decision by waiting to sell with perfect foresight",
    "decisions": "Scored windows with the book known at both ends (the timing value's decisions)",
}
LIVE_TTL_S = 30.0  # live metrics rank every scored prediction of a market: computed at most this often per process
_live: dict[tuple[int, int], tuple[float, dict]] = {}  # (market id, horizon) -> (monotonic time, live_metrics)


def cached_live_metrics(market, horizon: int) -> dict:
    from inference.metrics import live_metrics

    hit = _live.get((market.pk, horizon))
    if hit is None or time.monotonic() - hit[0] >= LIVE_TTL_S:
        hit = _live[market.pk, horizon] = (time.monotonic(), live_metrics(market, horizon))
    return hit[1]


def ts(value) -> float | None:
    return None if value is None else value.timestamp()


class Family:
    """A gauge family filled by add(labels..., value); None values are left out."""

    def __init__(self, name: str, text: str, labels: list[str]):
        self.metric = GaugeMetricFamily(name, text, labels=labels)

    def add(self, *labels_and_value) -> None:
        *labels, value = labels_and_value
        if value is not None:
            self.metric.add_metric([str(label) for label in labels], float(value))


def forecaster_label(served_by: dict) -> str:
    if served_by.get("id") is None:
        return "persistence"
    return f"{served_by['algorithm']} v{served_by['version']}"


PARTS: list = []  # parts apps above this one add (part(markets) yields metric families), see register


def register(part):
    """Add a part to every scrape; for apps above monitoring (the pipeline's step status)."""
    PARTS.append(part)
    return part


class SystemCollector:
    def collect(self):
        errors = Family("cryptopred_scrape_error", "1 when a part of the scrape failed (see the web log)", ["part"])
        try:
            markets = list(Market.objects.all())
        except Exception:
            log.exception("/metrics: markets not read")
            markets = []
            errors.add("markets", 1)
        for part in (self.markets, self.redis, self.models, self.live, self.drift, self.challengers, *PARTS):
            try:
                yield from part(markets)
            except Exception:
                log.exception("/metrics: %s not read", part.__name__)
                errors.add(part.__name__, 1)
        connections.close_all()
        yield errors.metric

    def markets(self, markets):
        enabled = Family("cryptopred_market_enabled", "1 when the market is enabled (streamed live)", ["market"])
        state = Family("cryptopred_stream_state", "1 for the stream's current state", ["market", "state"])
        since = Family(
            "cryptopred_stream_state_since_timestamp_seconds", "When the stream state last changed", ["market"]
        )
        last_trade = Family("cryptopred_last_trade_timestamp_seconds", "Exchange time of the newest trade", ["market"])
        checksum = Family(
            "cryptopred_market_book_checksum_failures", "Book checksum failures (Market field)", ["market"]
        )
        resyncs = Family("cryptopred_market_book_resyncs", "Book resyncs (Market field)", ["market"])
        for m in markets:
            enabled.add(m.name, int(m.enabled))
            for choice in Market.StreamState.values:
                state.add(m.name, choice, int(m.stream_state == choice))
            since.add(m.name, ts(m.stream_updated_at))
            last_trade.add(m.name, ts(m.last_trade_at))
            checksum.add(m.name, m.book_checksum_failures)
            resyncs.add(m.name, m.book_resyncs)
        yield from (f.metric for f in (enabled, state, since, last_trade, checksum, resyncs))

    def redis(self, markets):
        from core.health import BEAT_KEY

        client = get_redis()
        queues = Family("cryptopred_celery_queue_length", "Tasks waiting in a Celery queue (Redis LLEN)", ["queue"])
        for queue in sorted({settings.CELERY_TASK_DEFAULT_QUEUE, settings.STREAMS_QUEUE, *settings.STREAM_QUEUES}):
            keys = [queue, *(f"{queue}{QUEUE_PRIORITY_SEPARATOR}{p}" for p in (3, 6, 9))]
            pipe = client.pipeline()
            for key in keys:
                pipe.llen(key)
            queues.add(queue, sum(pipe.execute()))
        beat = Family("cryptopred_beat_last_tick_timestamp_seconds", "Last tick of the beat scheduler", [])
        grace = Family("cryptopred_config_candle_grace_seconds", "CANDLE_GRACE_S: the longest a window waits", [])
        grace.add(settings.CANDLE_GRACE_S)
        yield grace.metric
        tick = client.get(BEAT_KEY)
        beat.add(float(tick) if tick else None)
        yield queues.metric
        yield beat.metric

    def models(self, markets):
        from modeling.models import ModelArtifact

        info = Family(
            "cryptopred_model_active_info",
            "The active model",
            ["market", "horizon", "model_id", "version", "algorithm"],
        )
        age = Family(
            "cryptopred_model_age_seconds", "Age of the active model (since it was trained)", ["market", "horizon"]
        )
        last = Family(
            "cryptopred_training_last_timestamp_seconds", "When the newest model was trained", ["market", "horizon"]
        )
        outcome = Family(
            "cryptopred_training_last_outcome",
            "1 for the newest model's status (its gate outcome)",
            ["market", "horizon", "status"],
        )
        now = time.time()
        names = {m.pk: m.name for m in markets}
        artifacts = ModelArtifact.objects.filter(horizon__in=horizons.configured()).defer("artifact", "metrics")
        for a in artifacts.filter(status=ModelArtifact.Status.ACTIVE):
            if a.market_id in names and a.interval_s == next(m.interval_s for m in markets if m.pk == a.market_id):
                info.add(names[a.market_id], a.horizon, a.pk, a.version, a.algorithm, 1)
                age.add(names[a.market_id], a.horizon, now - a.created_at.timestamp())
        newest = artifacts.values("market_id", "horizon").annotate(last=Max("created_at"))
        for row in newest:
            newest_model = artifacts.filter(
                market_id=row["market_id"], horizon=row["horizon"], created_at=row["last"]
            ).first()
            if row["market_id"] in names and newest_model is not None:
                last.add(names[row["market_id"]], row["horizon"], row["last"].timestamp())
                outcome.add(names[row["market_id"]], row["horizon"], newest_model.status, 1)
        yield from (f.metric for f in (info, age, last, outcome))

    def live(self, markets):
        labels = ["market", "horizon", "forecaster"]
        families = {
            field: (
                Family(f"cryptopred_live_{field}", f"Live {field} of the forecaster's newest scored windows", labels),
                Family(
                    f"cryptopred_live_persistence_{field}", f"Live {field} of persistence on the same windows", labels
                ),
            )
            for field in LIVE_FIELDS
        }
        windows = Family("cryptopred_live_windows", "Scored windows the live metrics cover", labels)
        direction = {
            key: Family(f"cryptopred_live_p_up_{key}", text, labels)
            for key, text in (
                ("accuracy", "Served P(up) right on the moved windows (above or below one half)"),
                ("base_rate_accuracy", "The training base rate of P(up), right on the same windows"),
                ("brier", "Brier score of the served P(up) on the moved windows"),
                ("brier_reference", "Brier score of the base rate on the same windows"),
            )
        }
        timing = {key: Family(f"cryptopred_live_timing_{key}", text, labels) for key, text in TIMING_FIELDS.items()}
        for market in markets:
            for horizon in horizons.configured():
                metrics = cached_live_metrics(market, horizon)
                groups = [("all", metrics["served"])]
                groups += [(forecaster_label(g["served_by"]), g) for g in metrics["models"]]
                for forecaster, group in groups:
                    if not group["count"]:
                        continue
                    series = (market.name, horizon, forecaster)
                    windows.add(*series, group["count"])
                    for field, (model, persistence) in families.items():
                        model.add(*series, group["model"][field])
                        persistence.add(*series, group["persistence"][field])
                    for key, family in direction.items():
                        family.add(*series, (group.get("direction") or {}).get(key))
                    values = (group.get("value") or {}).get("timing", {})
                    if values.get("decisions"):
                        for key, family in timing.items():
                            family.add(*series, values.get(key))
        for model, persistence in families.values():
            yield model.metric
            yield persistence.metric
        yield windows.metric
        yield from (family.metric for family in direction.values())
        yield from (family.metric for family in timing.values())

    def drift(self, markets):
        from monitoring.models import DriftReport

        labels = ["market", "horizon"]
        psi = Family(
            "cryptopred_feature_drift_psi",
            "PSI of a feature: recent window vs training window",
            [*labels, "feature"],
        )
        max_psi = Family("cryptopred_feature_drift_max_psi", "Largest feature PSI", labels)
        feature = Family("cryptopred_feature_drift", "1 when DRIFT_FEATURE_SHARE of the features drifted", labels)
        error = Family("cryptopred_error_drift", "1 when ADWIN detected a change in the live squared errors", labels)
        checked = Family("cryptopred_drift_checked_timestamp_seconds", "Time of the latest drift check", labels)
        for market in markets:
            for horizon in horizons.configured():
                report = DriftReport.objects.filter(market=market, horizon=horizon).first()
                if report is None:
                    continue
                for name, value in sorted(report.psi.items()):
                    psi.add(market.name, horizon, name, value)
                max_psi.add(market.name, horizon, report.max_psi)
                feature.add(market.name, horizon, int(report.feature_drift))
                error.add(market.name, horizon, int(report.error_drift))
                checked.add(market.name, horizon, report.computed_at.timestamp())
        yield from (f.metric for f in (psi, max_psi, feature, error, checked))

    def challengers(self, markets):
        from monitoring import challengers

        labels = ["market", "horizon", "model"]
        rmse = Family("cryptopred_challenger_rmse", "A challenger's live RMSE (shadow, newest windows)", labels)
        persistence = Family("cryptopred_challenger_persistence_rmse", "Persistence on the same windows", labels)
        windows = Family("cryptopred_challenger_windows", "Scored shadow windows of the challenger", labels)
        for market in markets:
            for horizon in horizons.configured():
                for artifact in challengers.current(market, market.interval_s, horizon):
                    live = challengers.live_metrics(artifact)
                    if not live["count"]:
                        continue
                    series = (market.name, horizon, f"{artifact.algorithm} v{artifact.version}")
                    rmse.add(*series, live["model"]["rmse"])
                    persistence.add(*series, live["persistence"]["rmse"])
                    windows.add(*series, live["count"])
        yield from (f.metric for f in (rmse, persistence, windows))
