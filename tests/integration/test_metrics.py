"""Metrics and JSON logs on a real stack: the API and a worker serving /metrics (with a
token), fake-llm as the provider; runs that succeed and one the provider refuses.
The counters must move by exactly what happened, and every log line must be JSON
without the prompt or the key's secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded_redis import EmbeddedRedis, free_port
from tests.integration.conftest import _base_env
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Proc, Stack, start_stack, wait_until

METRICS_TOKEN = "metrics-token-" + uuid.uuid4().hex
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="module")
def metrics_stack(session_dir: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[Stack, str]]:
    """A stack of its own (SQLite, Redis database 3): its counters start at zero."""
    data_dir = session_dir / "metrics"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _base_env(data_dir)
    env.update(
        OWNKEY_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/3",
        OWNKEY_DATABASE_URL=f"sqlite:///{data_dir / 'ownkey.db'}",
        OWNKEY_LOG_FORMAT="json",
        OWNKEY_METRICS_TOKEN=METRICS_TOKEN,
    )
    stack = start_stack(env, data_dir, workers=0)
    port = free_port()
    try:
        stack.start_ready_worker(
            "metrics-worker", "--concurrency", "4", "--metrics-port", str(port)
        )
        yield stack, f"http://127.0.0.1:{port}/metrics"
    finally:
        stack.stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(url, headers=BEARER, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def setup_workflows(
    api: httpx.Client, fake_llm: FakeLLM, secret: str, prompt_marker: str
) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"m-{tag}",
            "api_key": secret,
            "base_url": f"{fake_llm.url}/v1",
        },
    ).json()
    for name, model in (("good", "gpt-4o-mini"), ("refused", "fault-auth")):
        created = api.post(
            "/agents", json={"name": f"{name}-{tag}", "key_id": key["id"], "model": model}
        )
        assert created.status_code == 201, created.text
    for name in ("good", "refused"):
        created = api.post(
            "/workflows",
            json={
                "name": f"{name}-{tag}",
                "steps": [
                    {
                        "id": "only",
                        "agent": f"{name}-{tag}",
                        "prompt": prompt_marker + " {{ input.t }}",
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
    return f"good-{tag}", f"refused-{tag}"


def run(api: httpx.Client, workflow: str) -> dict[str, Any]:
    submitted = api.post("/runs", json={"workflow": workflow, "input": {"t": "hello"}})
    assert submitted.status_code == 202, submitted.text
    return wait_for_run(api, submitted.json()["id"])


def test_metrics_move_and_logs_are_clean_json(
    metrics_stack: tuple[Stack, str], fake_llm: FakeLLM
) -> None:
    stack, worker_metrics = metrics_stack
    api_metrics = f"{stack.api_url}/metrics"
    secret = f"sk-CANARY-METRICS-{uuid.uuid4().hex}"
    prompt_marker = f"PROMPT-CANARY-{uuid.uuid4().hex}"

    # The token is required, on both endpoints, and a wrong one is refused.
    for url in (api_metrics, worker_metrics):
        assert httpx.get(url, timeout=10).status_code == 401
        assert (
            httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        )

    with stack.client() as api:
        good, refused = setup_workflows(api, fake_llm, secret, prompt_marker)
        runs = [run(api, good), run(api, good), run(api, refused)]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded", "failed"]
    good_steps = [r["steps"][0] for r in runs[:2]]

    # The API: state from SQL (cached for a few seconds, hence the wait), route templates.
    def api_state_is_current() -> bool:
        samples = scrape(api_metrics)
        return (
            value(samples, "ownkey_runs", status="succeeded") == 2
            and value(samples, "ownkey_runs", status="failed") == 1
        )

    wait_until(api_state_is_current, timeout=20, what="ownkey_runs to count the runs")
    samples = scrape(api_metrics)
    assert value(samples, "ownkey_steps", status="succeeded") == 2
    assert value(samples, "ownkey_steps", status="failed") == 1
    assert value(samples, "ownkey_steps", status="running") == 0
    assert ("ownkey_queue_depth", frozenset({("queue", "ownkey")})) in samples
    assert (
        value(
            samples, "ownkey_http_requests_total", method="POST", route="/api/v1/runs", status="202"
        )
        == 3
    )
    assert (
        value(
            samples,
            "ownkey_http_requests_total",
            method="GET",
            route="/api/v1/runs/{run_id}",
            status="200",
        )
        >= 3
    )
    api_text = httpx.get(api_metrics, headers=BEARER, timeout=10).text
    assert all(r["id"] not in api_text for r in runs), "a raw path leaked into a label"

    # The worker: what the steps did, counted where they ran.
    samples = scrape(worker_metrics)
    ok = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(samples, "ownkey_provider_calls_total", **ok, status_code="200") == 2
    assert (
        value(
            samples,
            "ownkey_provider_calls_total",
            provider="openai",
            model="fault-auth",
            status_code="401",
        )
        == 1
    )
    assert value(samples, "ownkey_tokens_total", **ok, kind="input") == sum(
        s["input_tokens"] for s in good_steps
    )
    assert value(samples, "ownkey_tokens_total", **ok, kind="output") == sum(
        s["output_tokens"] for s in good_steps
    )
    assert value(samples, "ownkey_cost_usd_total", **ok) == pytest.approx(
        sum(s["cost_usd"] for s in good_steps)
    )
    assert value(samples, "ownkey_step_duration_seconds_count", **ok) == 2
    assert value(samples, "ownkey_steps_finished_total", status="succeeded") == 2
    assert value(samples, "ownkey_steps_finished_total", status="failed") == 1
    assert value(samples, "ownkey_step_queue_wait_seconds_count", queue="ownkey") == 3

    # JSON logs: every line of the API and the worker parses; step lines carry the ids.
    step_lines: list[dict[str, Any]] = []
    procs: list[Proc] = [p for p in stack.procs if p.name.startswith(("api-", "metrics-worker"))]
    assert len(procs) == 2
    for proc in procs:
        text = proc.log()
        assert text.strip(), f"{proc.name} wrote nothing"
        assert secret not in text and secret[-12:] not in text, (
            f"the secret leaked into {proc.name}"
        )
        assert prompt_marker not in text, f"the prompt leaked into {proc.name}'s log"
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except ValueError:
                pytest.fail(f"{proc.name} line {number} is not JSON: {line[:200]}")
            assert {"time", "level", "logger", "message"} <= parsed.keys()
            if "step_id" in parsed:
                step_lines.append(parsed)
    run_ids = {r["id"] for r in runs}
    step_ids = {r["steps"][0]["step_run_id"] for r in runs}
    assert {line["step_id"] for line in step_lines} >= step_ids
    with_run = [line for line in step_lines if "run_id" in line]
    assert with_run and {line["run_id"] for line in with_run} == run_ids
    assert all(line["provider"] == "openai" for line in with_run)
