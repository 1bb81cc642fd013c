"""The metrics' collectors: SQL and Redis state at scrape time, the worker's counters,
the API's route-template labels and the /metrics token."""

from __future__ import annotations

import fakeredis
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlmodel import Session

from api.metrics.http import UNMATCHED, HttpMetrics, http_metrics
from api.metrics.state import StateCollector, queue_names
from shared.config import Settings
from shared.db import engine_for
from shared.metrics_auth import metrics_allowed
from shared.models import StepRun
from tests.factories import make_closed_run, make_workflow
from worker import metrics


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_queue_names_are_the_defaults_plus_the_configured_ones_without_repeats() -> None:
    settings = Settings(worker_queues="ownkey, batch,ownkey")
    assert queue_names(settings) == ["ownkey", "ownkey.control", "batch"]


def test_state_collector_counts_runs_and_steps_by_status_and_queue_depths(
    sqlite_db: str,
) -> None:
    with Session(engine_for(sqlite_db)) as session:
        workflow = make_workflow(session, name="w", steps=[])
        for status in ("succeeded", "succeeded", "failed"):
            run = make_closed_run(session, workflow, status=status)
        for status in ("queued", "running", "running"):
            session.add(
                StepRun(
                    run_id=run.id,
                    step_key=f"s-{status}-{len(session.new)}",
                    status=status,
                    agent_id="a",
                    agent_name="a",
                    key_id="k",
                    provider="openai",
                    model="m",
                    prompt_template="p",
                )
            )
        session.commit()
    broker = fakeredis.FakeRedis()
    broker.rpush("ownkey", b"m1", b"m2")
    broker.rpush("batch", b"m3")
    registry = CollectorRegistry()
    registry.register(StateCollector(["ownkey", "ownkey.control", "batch"], broker=lambda: broker))

    assert _value(registry, "ownkey_runs", status="succeeded") == 2
    assert _value(registry, "ownkey_runs", status="failed") == 1
    assert _value(registry, "ownkey_runs", status="cancelled") == 0  # every status, 0 if none
    assert _value(registry, "ownkey_steps", status="running") == 2
    assert _value(registry, "ownkey_steps", status="queued") == 1
    assert _value(registry, "ownkey_queue_depth", queue="ownkey") == 2
    assert _value(registry, "ownkey_queue_depth", queue="batch") == 1
    assert _value(registry, "ownkey_queue_depth", queue="ownkey.control") == 0


def test_state_is_cached_between_scrapes(sqlite_db: str) -> None:
    reads = {"n": 0}
    broker = fakeredis.FakeRedis()

    def counting_broker() -> fakeredis.FakeRedis:
        reads["n"] += 1
        return broker

    registry = CollectorRegistry()
    registry.register(StateCollector(["ownkey"], broker=counting_broker, ttl=3600))
    broker.rpush("ownkey", b"m1")
    assert _value(registry, "ownkey_queue_depth", queue="ownkey") == 1
    broker.rpush("ownkey", b"m2")
    assert _value(registry, "ownkey_queue_depth", queue="ownkey") == 1  # cached
    assert reads["n"] == 1

    fresh = CollectorRegistry()
    fresh.register(StateCollector(["ownkey"], broker=lambda: broker, ttl=0))
    assert _value(fresh, "ownkey_queue_depth", queue="ownkey") == 2


def test_a_broker_outage_leaves_the_sql_figures_served(sqlite_db: str) -> None:
    down = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    down.connection_pool.connection_kwargs["server"].connected = False
    registry = CollectorRegistry()
    registry.register(StateCollector(["ownkey"], broker=lambda: down))
    assert _value(registry, "ownkey_runs", status="succeeded") == 0
    assert _value(registry, "ownkey_queue_depth", queue="ownkey") is None


def test_worker_counters_move_with_each_observation() -> None:
    registry = metrics.REGISTRY
    labels = {"provider": "unitprov", "model": "unit-model"}
    before = _value(registry, "ownkey_tokens_total", **labels, kind="input") or 0.0
    metrics.observe_call(
        "unitprov",
        "unit-model",
        status_code=200,
        seconds=1.5,
        input_tokens=10,
        output_tokens=3,
        cached_tokens=0,
        cost_usd=0.25,
    )
    metrics.observe_call("unitprov", "unit-model", status_code=None)
    metrics.observe_call("unitprov", "unit-model", status_code=429)
    assert _value(registry, "ownkey_tokens_total", **labels, kind="input") == before + 10
    assert _value(registry, "ownkey_tokens_total", **labels, kind="cached") is None
    assert _value(registry, "ownkey_provider_calls_total", **labels, status_code="error") == 1
    assert _value(registry, "ownkey_provider_calls_total", **labels, status_code="429") == 1
    assert _value(registry, "ownkey_cost_usd_total", **labels) == pytest.approx(0.25)
    assert _value(registry, "ownkey_step_duration_seconds_count", **labels) == 1
    assert _value(registry, "ownkey_step_duration_seconds_bucket", **labels, le="2.0") == 1
    assert _value(registry, "ownkey_step_duration_seconds_bucket", **labels, le="1.0") == 0

    metrics.observe_rate_limit_wait("unitprov", 2.5)
    assert _value(registry, "ownkey_rate_limit_waits_total", provider="unitprov") == 1
    assert _value(registry, "ownkey_rate_limit_wait_seconds_total", provider="unitprov") == 2.5
    metrics.observe_queue_wait("unit-queue", -1.0)  # clock skew never goes negative
    assert _value(registry, "ownkey_step_queue_wait_seconds_sum", queue="unit-queue") == 0.0


def _app_with_http_metrics() -> tuple[TestClient, CollectorRegistry]:
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/api/v1/runs/{run_id}")
    def get_run(run_id: str) -> dict[str, str]:
        return {"id": run_id}

    app.add_middleware(HttpMetrics, instruments=http_metrics(registry))
    return TestClient(app), registry


def test_http_metrics_label_the_route_template_never_the_raw_path() -> None:
    client, registry = _app_with_http_metrics()
    for run_id in ("r1", "r2", "r3"):
        assert client.get(f"/api/v1/runs/{run_id}").status_code == 200
    assert client.get("/nowhere/secret-id").status_code == 404
    route = "/api/v1/runs/{run_id}"
    assert (
        _value(registry, "ownkey_http_requests_total", method="GET", route=route, status="200") == 3
    )
    assert (
        _value(registry, "ownkey_http_requests_total", method="GET", route=UNMATCHED, status="404")
        == 1
    )
    assert (
        _value(registry, "ownkey_http_request_duration_seconds_count", method="GET", route=route)
        == 3
    )
    exposed = "\n".join(
        sample.labels.get("route", "") for metric in registry.collect() for sample in metric.samples
    )
    assert "r1" not in exposed and "secret-id" not in exposed


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (None, False),
        ("Bearer wrong", False),
        ("Basic s3cret-metrics", False),
        ("Bearer s3cret-metrics", True),
        ("bearer s3cret-metrics", True),
    ],
)
def test_metrics_token(header: str | None, allowed: bool) -> None:
    assert metrics_allowed(SecretStr("s3cret-metrics"), header) is allowed


def test_without_a_token_metrics_are_open() -> None:
    assert metrics_allowed(SecretStr(""), None) is True


def test_http_metrics_keep_the_prefix_of_an_included_router() -> None:
    from fastapi import APIRouter

    registry = CollectorRegistry()
    app = FastAPI()
    runs = APIRouter(prefix="/runs")

    @runs.get("/{run_id}")
    def get_run(run_id: str) -> dict[str, str]:
        return {"id": run_id}

    @runs.get("")
    def list_runs() -> list[str]:
        return []

    v1 = APIRouter(prefix="/api/v1")
    v1.include_router(runs)
    app.include_router(v1)
    app.add_middleware(HttpMetrics, instruments=http_metrics(registry))
    client = TestClient(app)
    assert client.get("/api/v1/runs/abc").status_code == 200
    assert client.get("/api/v1/runs").status_code == 200
    for route in ("/api/v1/runs/{run_id}", "/api/v1/runs"):
        labels = {"method": "GET", "route": route, "status": "200"}
        assert _value(registry, "ownkey_http_requests_total", **labels) == 1, route
