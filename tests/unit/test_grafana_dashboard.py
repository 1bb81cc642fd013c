"""The Grafana dashboard imports (valid JSON, a data source variable) and every metric
its PromQL reads is one ownkey exports, so renaming a metric breaks this test, not a
user's dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from api.metrics.registry import api_registry
from shared.config import Settings
from worker.metrics import REGISTRY as WORKER_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ownkey-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\b((?:ownkey|process)_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry can expose, read from its collectors' descriptions
    (no SQL, no Redis: the API's state collector describes itself without reading)."""
    names: set[str] = set()
    for collector in list(registry._collector_to_names):  # noqa: SLF001
        describe = getattr(collector, "describe", None)
        families = describe() if describe else collector.collect()
        for family in families:
            for suffix in SUFFIXES.get(family.type, ("",)):
                names.add(family.name + suffix)
    return names


def all_exported() -> set[str]:
    api, _ = api_registry(Settings())
    return exported_names(api) | exported_names(WORKER_REGISTRY)


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_parses_and_has_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = dashboard["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= (
        variables[0].items()
    )
    assert dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_metric_the_dashboard_reads_is_exported() -> None:
    exported = all_exported()
    used = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in METRIC.findall(expr)
    }
    required = {
        "ownkey_runs",
        "ownkey_steps",
        "ownkey_queue_depth",
        "ownkey_provider_calls_total",
        "ownkey_tokens_total",
        "ownkey_cost_usd_total",
        "ownkey_step_duration_seconds_bucket",
        "ownkey_step_queue_wait_seconds_bucket",
        "ownkey_rate_limit_waits_total",
    }
    assert required <= used, f"the dashboard lacks panels for {required - used}"
    assert used <= exported, (
        f"the dashboard reads metrics ownkey does not export: {used - exported}"
    )


def test_the_names_the_brief_fixed_are_exported() -> None:
    """Deploy files and dashboards written elsewhere use these exact names."""
    assert {
        "ownkey_runs",
        "ownkey_steps",
        "ownkey_queue_depth",
        "ownkey_provider_calls_total",
        "ownkey_tokens_total",
        "ownkey_cost_usd_total",
        "ownkey_step_duration_seconds_bucket",
        "ownkey_step_queue_wait_seconds_bucket",
        "ownkey_steps_finished_total",
        "ownkey_rate_limit_waits_total",
        "ownkey_rate_limit_wait_seconds_total",
        "ownkey_http_requests_total",
        "ownkey_http_request_duration_seconds_bucket",
    } <= all_exported()


def test_prometheus_config_scrapes_the_api_and_the_workers() -> None:
    import yaml

    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"ownkey-api", "ownkey-workers"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
