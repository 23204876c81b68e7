"""Writes dashboards/cryptopred.json, the Grafana dashboard of the pipeline end to end.

    .venv/bin/python ops/grafana/build_dashboard.py

The JSON is committed (compose provisions it; `make up` users import it); edit
this script and run it again rather than editing the JSON by hand. Every query
uses the dashboard's data-source variable, so an imported copy works with any
Prometheus data source.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
OUT = Path(__file__).resolve().parent / "dashboards" / "cryptopred.json"


class Layout:
    def __init__(self):
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append(
            {"type": "row", "title": title, "id": self._id(), "collapsed": False, "gridPos": self._pos(24, 1)}
        )
        self.y += 1

    def panel(
        self,
        title: str,
        targets: list[tuple[str, str]],
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
        description: str = "",
        thresholds: list | None = None,
    ) -> None:
        if self.x + width > 24:
            self.y += 8
            self.x = 0
        panel = {
            "type": kind,
            "title": title,
            "id": self._id(),
            "datasource": DS,
            "description": description,
            "gridPos": self._pos(width, 8),
            "targets": [
                {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        }
        if thresholds:
            panel["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": thresholds}
        self.panels.append(panel)
        self.x += width

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _pos(self, w: int, h: int) -> dict:
        return {"x": self.x, "y": self.y, "w": w, "h": h}


def quantile(q: float, metric: str, by: str = "market", sel: str = "") -> str:
    """The q quantile of a histogram's recent observations, by one label."""
    selector = f"{{{sel}}}" if sel else ""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{selector}[$__rate_interval])))"


def build() -> dict:
    m = 'market=~"$market"'
    d = Layout()
    d.row("Feed: exchange → trades → candles")
    d.panel(
        "Trades ingested /s",
        [(f"sum by (market) (rate(cryptopred_trades_ingested_total{{{m}}}[$__rate_interval]))", "{{market}}")],
        "ops",
    )
    d.panel(
        "Feed lag p50 / p99 (exchange time → received)",
        [
            (
                quantile(0.5, "cryptopred_feed_lag_seconds", sel=m),
                "p50 {{market}}",
            ),
            (
                quantile(0.99, "cryptopred_feed_lag_seconds", sel=m),
                "p99 {{market}}",
            ),
        ],
        "s",
    )
    d.panel(
        "Stream state (1 = current)",
        [(f"cryptopred_stream_state{{{m}}} == 1", "{{market}} {{state}}")],
        "short",
        kind="state-timeline",
    )
    d.panel(
        "Reconnects and late trades /min",
        [
            (f"sum by (market) (rate(cryptopred_stream_reconnects_total{{{m}}}[5m])) * 60", "reconnects {{market}}"),
            (f"sum by (market) (rate(cryptopred_late_trades_total{{{m}}}[5m])) * 60", "late trades {{market}}"),
        ],
    )
    d.panel(
        "Order book: updates /s; checksum failures, resyncs, receive-time stamps /min",
        [
            (f"sum by (market) (rate(cryptopred_book_updates_total{{{m}}}[$__rate_interval]))", "updates/s {{market}}"),
            (
                f"sum by (market) (rate(cryptopred_book_checksum_failures_total{{{m}}}[5m])) * 60",
                "checksum failures {{market}}",
            ),
            (f"sum by (market) (rate(cryptopred_book_resyncs_total{{{m}}}[5m])) * 60", "resyncs {{market}}"),
            (
                f"sum by (market) (rate(cryptopred_book_receive_stamped_total{{{m}}}[5m])) * 60",
                "receive-time stamps {{market}}",
            ),
        ],
    )
    d.panel(
        "Age of the newest trade",
        [
            (
                f"time() - cryptopred_last_trade_timestamp_seconds{{{m}}}"
                " and on (market) cryptopred_market_enabled == 1",
                "{{market}}",
            )
        ],
        "s",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 600}],
    )
    d.row("Pipeline step: features → predictions → scoring")
    d.panel(
        "Windows per minute",
        [
            (f"sum by (market) (rate(cryptopred_candles_finalized_total{{{m}}}[5m])) * 60", "candles {{market}}"),
            (f"sum by (market) (rate(cryptopred_predictions_total{{{m}}}[5m])) * 60", "predictions {{market}}"),
            (f"sum by (market) (rate(cryptopred_predictions_scored_total{{{m}}}[5m])) * 60", "scored {{market}}"),
            (f"sum by (market) (rate(cryptopred_predictions_skipped_total{{{m}}}[5m])) * 60", "skipped {{market}}"),
        ],
    )
    d.panel(
        "Window end → prediction stored, p50 / p99 (grace included)",
        [
            (
                quantile(0.5, "cryptopred_prediction_delay_seconds", sel=m),
                "p50 {{market}}",
            ),
            (
                quantile(0.99, "cryptopred_prediction_delay_seconds", sel=m),
                "p99 {{market}}",
            ),
            ("cryptopred_config_candle_grace_seconds + 0.1", "alert above (grace + 100 ms)"),
        ],
        "s",
    )
    d.panel(
        "Step duration p99, model compute p99",
        [
            (
                quantile(0.99, "cryptopred_step_duration_seconds", sel=m),
                "step {{market}}",
            ),
            (
                quantile(0.99, "cryptopred_prediction_compute_seconds", sel=m),
                "model {{market}}",
            ),
        ],
        "s",
    )
    d.panel(
        "Step failures",
        [
            (f"cryptopred_step_consecutive_failures{{{m}}}", "in a row {{market}}"),
            (
                f'sum by (market) (increase(cryptopred_step_runs_total{{{m},outcome="failed"}}[5m]))',
                "failed /5m {{market}}",
            ),
        ],
    )
    d.row("Serving: websocket and API")
    d.panel(
        "Window end → websocket publish p50 / p99",
        [
            (
                quantile(0.5, "cryptopred_ws_publish_delay_seconds", "channel", sel=""),
                "p50 {{channel}}",
            ),
            (
                quantile(0.99, "cryptopred_ws_publish_delay_seconds", "channel", sel=""),
                "p99 {{channel}}",
            ),
        ],
        "s",
    )
    d.panel(
        "Websocket connections and subscriptions",
        [
            ("sum(cryptopred_ws_connections)", "connections"),
            ("sum by (channel) (cryptopred_ws_subscriptions)", "subscriptions {{channel}}"),
        ],
    )
    d.panel(
        "HTTP requests /s by status, throttled /s",
        [
            ("sum by (status) (rate(cryptopred_http_requests_total[$__rate_interval]))", "{{status}}"),
            ("sum by (client) (rate(cryptopred_api_throttled_total[$__rate_interval]))", "throttled {{client}}"),
        ],
        "reqps",
    )
    d.row("Models: live accuracy next to persistence")
    d.panel(
        "Live RMSE (bp), served vs persistence on the same windows",
        [
            (f'cryptopred_live_rmse_bps{{{m},forecaster="all"}}', "served {{market}} +{{horizon}}"),
            (f'cryptopred_live_persistence_rmse_bps{{{m},forecaster="all"}}', "persistence {{market}} +{{horizon}}"),
        ],
        "none",
    )
    d.panel(
        "Live directional accuracy and 80 % coverage",
        [
            (f'cryptopred_live_directional_accuracy{{{m},forecaster="all"}}', "direction {{market}} +{{horizon}}"),
            (f'cryptopred_live_coverage_80{{{m},forecaster="all"}}', "coverage {{market}} +{{horizon}}"),
        ],
        "percentunit",
    )
    d.panel(
        "Active model age, training runs /h",
        [
            (f"cryptopred_model_age_seconds{{{m}}} / 3600", "active model age h {{market}}"),
            (
                f"sum by (market, outcome) (increase(cryptopred_training_runs_total{{{m}}}[1h]))",
                "{{outcome}} {{market}}",
            ),
        ],
    )
    d.panel(
        "Challengers in shadow: live RMSE vs persistence",
        [
            (f"cryptopred_challenger_rmse{{{m}}}", "{{model}} {{market}} +{{horizon}}"),
            (f"cryptopred_challenger_persistence_rmse{{{m}}}", "persistence ({{model}}) {{market}} +{{horizon}}"),
        ],
        "none",
    )
    d.panel(
        "Feature drift: largest PSI",
        [
            (f"cryptopred_feature_drift_max_psi{{{m}}}", "{{market}} +{{horizon}}"),
        ],
        "none",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.25}],
    )
    d.panel(
        "Drift detected (1 = yes)",
        [
            (f"cryptopred_feature_drift{{{m}}}", "features {{market}} +{{horizon}}"),
            (f"cryptopred_error_drift{{{m}}}", "errors {{market}} +{{horizon}}"),
        ],
    )
    d.row("Operations")
    d.panel("Celery queue length", [("cryptopred_celery_queue_length", "{{queue}}")])
    d.panel(
        "Beat heartbeat age",
        [("time() - cryptopred_beat_last_tick_timestamp_seconds", "beat")],
        "s",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 120}],
    )
    d.panel("Scrape errors", [("cryptopred_scrape_error", "{{part}}"), ('up{job="cryptopred"}', "up")])
    return {
        "title": "cryptopred",
        "uid": "cryptopred",
        "tags": ["cryptopred"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "15s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "market",
                    "label": "Market",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(cryptopred_market_enabled, market)", "refId": "market"},
                    "definition": "label_values(cryptopred_market_enabled, market)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": d.panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
