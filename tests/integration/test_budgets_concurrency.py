"""Many steps at once against a budget smaller than their total: two workers (28 steps in
flight) overshoot it by at most the steps already in flight, and every later run ends
`budget_exceeded` without reaching the provider. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_budgets_api import let_workers_see_budgets, one_step_workflow
from tests.processes import FakeLLM, Stack

RUNS = 80
STEP_NANOS = 3_000_000  # 1000 tokens in at $1, 1000 out at $2 per million: $0.003
LIMIT_STEPS = 30  # the budget holds 30 steps
STACK_WORKER_THREADS = 20  # the stack's own worker (tests/processes.py)
EXTRA_WORKER_THREADS = 8
IN_FLIGHT = STACK_WORKER_THREADS + EXTRA_WORKER_THREADS


@pytest.fixture
def slow_fixed_usage(fake_llm: FakeLLM) -> Iterator[None]:
    """Every call takes 0.3 s, so that many are in flight at once."""
    fake_llm.configure(input_tokens=1000, output_tokens=1000, latency_seconds=0.3)
    yield
    fake_llm.configure(input_tokens=None, output_tokens=None, latency_seconds=0.0)


def wait_for_all(api: httpx.Client, workflow: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = api.get("/runs", params={"workflow": workflow, "limit": 200}).json()["data"]
        if len(runs) == count and all(r["finished_at"] for r in runs):
            return list(runs)
        time.sleep(0.2)
    raise AssertionError(f"runs of {workflow} did not all finish")


def test_concurrent_steps_overshoot_a_budget_by_at_most_the_steps_in_flight(
    stack: Stack, fake_llm: FakeLLM, slow_fixed_usage: None
) -> None:
    name = f"crowd-{uuid.uuid4().hex[:8]}"
    extra = stack.start_ready_worker(f"{name}-worker", "--concurrency", str(EXTRA_WORKER_THREADS))
    try:
        with stack.client() as api:
            made = one_step_workflow(api, fake_llm, name)
            limit_usd = f"{LIMIT_STEPS * STEP_NANOS / 1e9:.3f}"
            capped = api.post(
                "/budgets",
                json={"name": name, "scope": "workflow", "scope_id": name, "limit_usd": limit_usd},
            ).json()
            roomy = api.post(
                "/budgets",
                json={
                    "name": f"{name}-key",
                    "scope": "key",
                    "scope_id": made["key"]["id"],
                    "limit_usd": 1000,
                },
            ).json()
            let_workers_see_budgets()
            for n in range(RUNS):
                accepted = api.post("/runs", json={"workflow": name, "input": {"n": n}})
                assert accepted.status_code == 202, accepted.text
            runs = wait_for_all(api, name, RUNS)
            capped = api.get(f"/budgets/{capped['id']}").json()
            roomy = api.get(f"/budgets/{roomy['id']}").json()
            refused = [
                api.get(f"/runs/{r['id']}").json() for r in runs if r["status"] == "budget_exceeded"
            ]
            for budget in (capped, roomy):
                api.delete(f"/budgets/{budget['id']}").raise_for_status()
    finally:
        extra.stop()
        stack.procs.remove(extra)

    succeeded = [r for r in runs if r["status"] == "succeeded"]
    assert len(succeeded) + len(refused) == RUNS
    calls = [c for c in fake_llm.calls() if c["model"] == made["model"]]
    assert len(calls) == len(succeeded)  # a refused run never reached the provider
    spent = round(capped["spent_usd"] * 1e9)
    assert spent == len(succeeded) * STEP_NANOS == round(roomy["spent_usd"] * 1e9)
    # Nothing is refused before the limit is reached; past it, at most the steps that
    # were already in flight when it was reached complete.
    limit = LIMIT_STEPS * STEP_NANOS
    assert limit <= spent <= limit + IN_FLIGHT * STEP_NANOS
    assert capped["exceeded"] and capped["exceeded_at"] and capped["remaining_usd"] == 0
    assert len(refused) >= RUNS - LIMIT_STEPS - IN_FLIGHT
    for run in refused:
        step = run["steps"][0]
        assert run["error"].startswith(f"step 'only' failed: budget '{name}' (workflow, $0.09")
        assert step["status"] == "failed" and step["error"] in run["error"]
        assert step["attempt_log"][-1]["kind"] == "BudgetExceeded"
        assert step["input_tokens"] is None and step["cost_usd"] is None
