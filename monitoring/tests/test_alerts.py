"""The alert rules and the dashboard: valid for Prometheus, and naming only metrics the system exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Histogram

from core import prometheus
from monitoring.collector import SystemCollector

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "cryptopred.json"
NAME = re.compile(r"\bcryptopred_[a-z0-9_]+")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return path


def test_rules_are_valid():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_rules_fire_as_documented():
    """ops/prometheus/alerts_test.yml: series in, alerts out (promtool's own rule unit tests)."""
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=RULES.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_configs_are_valid(tmp_path):
    result = subprocess.run(
        [promtool(), "check", "config", "prometheus-local.yml"], capture_output=True, text=True, cwd=RULES.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The compose one, with its files where the compose file puts them (/etc/prometheus/ in the container).
    config = (RULES.parent / "prometheus.yml").read_text().replace("/etc/prometheus/", f"{tmp_path}/")
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    (tmp_path / "metrics_token").write_text("a-token")
    result = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_prometheus_and_grafana_to_the_app():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services, app = compose["services"], compose["x-app"]
    assert app["environment"]["METRICS_DIR"] == "/metrics" and "metrics:/metrics" in app["volumes"]
    for name in ("web", "worker", "streams", "beat"):
        assert services[name]["volumes"] == app["volumes"]  # merged from x-app: every process shares the files
    prometheus, grafana = services["prometheus"], services["grafana"]
    targets = {c["source"]: c["target"] for c in prometheus["configs"]}
    assert targets == {
        "prometheus_config": "/etc/prometheus/prometheus.yml",
        "prometheus_alerts": "/etc/prometheus/alerts.yml",
        "metrics_token": "/etc/prometheus/metrics_token",
    }
    assert compose["configs"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    for source in ("prometheus_config", "prometheus_alerts"):
        assert (ROOT / compose["configs"][source]["file"]).is_file()
    scrape = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["web:8000"] and scrape["metrics_path"] == "/metrics"
    assert scrape["authorization"]["credentials_file"] == targets["metrics_token"]
    assert "web" in app["environment"]["ALLOWED_HOSTS"]  # the Host header Prometheus sends
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"] if volume.startswith("./"))
    assert mounts == {
        "./ops/grafana/provisioning": "/etc/grafana/provisioning",
        "./ops/grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    provider = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/cryptopred.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    declared = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            if not volume.startswith("./"):
                assert volume.split(":", 1)[0] in declared, volume


def test_dashboard_json_is_what_the_script_builds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboard", ROOT / "ops/grafana/build_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text()) == module.build(), "run ops/grafana/build_dashboard.py"


def exported_names() -> set[str]:
    """Every sample name /metrics can show: core.prometheus' objects and the scrape-time collector's families."""
    names = set()
    for obj in vars(prometheus).values():
        objs = obj.values() if isinstance(obj, dict) else [obj]
        for metric in objs:
            if isinstance(metric, Counter):
                names.add(f"{metric._name}_total")
            elif isinstance(metric, Histogram):
                names.update(f"{metric._name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            elif hasattr(metric, "_name") and hasattr(metric, "_type"):
                names.add(metric._name)
    return names


@pytest.mark.django_db
def test_alerts_and_dashboard_name_only_exported_metrics():
    names = exported_names() | {family.name for family in SystemCollector().collect()}
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used, "no cryptopred metric in the rules and the dashboard?"
    assert used <= names, f"not exported: {sorted(used - names)}"
    # The pipeline end to end is on the dashboard: feed, step, serving, models, drift.
    for needed in (
        "cryptopred_trades_ingested_total",
        "cryptopred_feed_lag_seconds_bucket",
        "cryptopred_prediction_delay_seconds_bucket",
        "cryptopred_ws_publish_delay_seconds_bucket",
        "cryptopred_live_rmse_bps",
        "cryptopred_feature_drift_max_psi",
        "cryptopred_celery_queue_length",
    ):
        assert needed in used, needed
