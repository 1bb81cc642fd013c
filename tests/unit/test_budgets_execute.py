"""Budgets on the worker's path: a spent budget stops a step before its provider call and
ends the run `budget_exceeded`; spend is recorded with the step's success; the soft-limit
webhook is called after that commit, once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import select, update

from shared import budgets, webhooks
from shared.automation_models import Budget, BudgetUsage
from shared.db import session_scope, transaction
from shared.models import Run, RunStatus, StepRun, StepStatus, utcnow
from shared.pricing import Price
from shared.providers import ChatRequest, Completion
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow
from worker import execute, lifecycle, limits
from worker.reconcile import close_finished_runs

USD = 1_000_000_000
# 500k input + 500k output tokens at $1 per million each: one call costs exactly $1.
ONE_DOLLAR_CALL = Completion(
    text="ok",
    finish_reason="stop",
    input_tokens=500_000,
    output_tokens=500_000,
    cached_input_tokens=0,
    cache_write_tokens=0,
    request_id="r",
    latency_ms=1,
    usage_reported=True,
)
JOIN = [
    {"id": "a", "agent": "writer", "prompt": "A"},
    {"id": "b", "agent": "writer", "prompt": "B"},
    {"id": "c", "agent": "writer", "prompt": "C", "depends_on": ["a", "b"]},
]


@dataclass
class FakeProvider:
    calls: list[str] = field(default_factory=list)

    def complete(self, request: ChatRequest) -> Completion:
        self.calls.append(request.prompt)
        return ONE_DOLLAR_CALL


@pytest.fixture
def provider(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """execute_step with everything but SQL faked: the provider, prices, rate limits
    and the broker (successors are collected, then run by the test)."""
    fake = FakeProvider()
    monkeypatch.setattr(execute, "make_provider", lambda *a, **k: fake)
    monkeypatch.setattr(
        execute, "price_lookup", lambda *_: Price(input=Decimal(1), output=Decimal(1))
    )
    monkeypatch.setattr(limits, "wait_for_slot", lambda *_: 0.0)
    monkeypatch.setattr(limits, "settle", lambda *_: None)
    monkeypatch.setattr(execute, "enqueue_steps", lambda ids, **_: None)
    budgets.forget_cached_budgets()
    yield fake
    budgets.forget_cached_budgets()


def setup_workflow(steps: list[dict[str, Any]]) -> str:
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="writer")
        return make_workflow(session, name="wf", steps=steps).id


def submit(workflow_id: str) -> tuple[str, dict[str, str]]:
    with session_scope() as session:
        run_id = create_run(session, workflow=workflow_id, input={}).run_id
        steps = session.exec(select(StepRun).where(StepRun.run_id == run_id)).all()
        return run_id, {s.step_key: s.id for s in steps}


def add_budget(name: str, limit_nanos: int, **fields: Any) -> str:
    with session_scope() as session:
        fields.setdefault("scope", "instance")
        budget = Budget(name=name, limit_nanos=limit_nanos, **fields)
        session.add(budget)
        session.flush()
    budgets.forget_cached_budgets()
    return budget.id


def spent(budget_id: str) -> int:
    with session_scope() as session:
        rows = session.exec(select(BudgetUsage).where(BudgetUsage.budget_id == budget_id)).all()
        return sum(r.spent_nanos for r in rows)


def load(run_id: str) -> tuple[Run, dict[str, StepRun]]:
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        steps = session.exec(select(StepRun).where(StepRun.run_id == run_id)).all()
        return run, {s.step_key: s for s in steps}


def test_a_spent_budget_stops_the_next_step_before_its_call(provider: FakeProvider) -> None:
    workflow_id = setup_workflow(JOIN)
    budget_id = add_budget("wf-cap", 3 * USD // 2, scope="workflow", scope_id=workflow_id)
    run_id, ids = submit(workflow_id)
    execute.execute_step(ids["a"])  # $1 of $1.50
    execute.execute_step(ids["b"])  # still below the limit when checked: $2 of $1.50
    assert spent(budget_id) == 2 * USD
    execute.execute_step(ids["c"])  # the window is spent: no call
    assert provider.calls == ["A", "B"]
    run, steps = load(run_id)
    assert run.status == RunStatus.budget_exceeded and run.finished_at is not None
    assert run.failed_step == "c"
    message = "budget 'wf-cap' (workflow, $1.50 per month) is spent: $2.0000 of $1.50"
    assert run.error == f"step 'c' failed: {message}"
    assert steps["c"].status == StepStatus.failed and steps["c"].error_kind == "BudgetExceeded"
    assert steps["c"].error == message and steps["c"].prompt is None
    assert [e["kind"] for e in steps["c"].attempt_log] == ["BudgetExceeded"]
    # Other workflows are not held back by this workflow's budget.
    other = setup_other_workflow()
    other_run, other_ids = submit(other)
    execute.execute_step(other_ids["solo"])
    assert load(other_run)[0].status == RunStatus.succeeded


def setup_other_workflow() -> str:
    with session_scope() as session:
        return make_workflow(
            session, name="other", steps=[{"id": "solo", "agent": "writer", "prompt": "S"}]
        ).id


def test_waiting_steps_are_skipped_and_a_step_in_flight_is_kept_and_counted(
    provider: FakeProvider,
) -> None:
    workflow_id = setup_workflow(JOIN)
    budget_id = add_budget("all", USD)
    run_id, ids = submit(workflow_id)
    with transaction() as db:  # b is calling its provider on another worker
        in_flight = lifecycle.claim_step(
            db, ids["b"], host="other", default_timeout=30, lease_margin=30
        )
        assert in_flight is not None
        budgets.record_spend(db, key_id="k", workflow_id="w", cost_nanos=USD, now=utcnow())
    execute.execute_step(ids["a"])
    run, steps = load(run_id)
    assert provider.calls == []
    assert run.status == RunStatus.budget_exceeded and run.finished_at is None  # b runs
    assert steps["c"].status == StepStatus.skipped
    result = lifecycle.StepResult("late", "B", "stop", None, 10, 10, 0, 0, 7, 1)
    with transaction() as db:
        closed = lifecycle.complete_step(db, in_flight, result, {})
    assert closed.closed and closed.ready == []
    run, steps = load(run_id)
    assert run.status == RunStatus.budget_exceeded and run.finished_at is not None
    assert steps["b"].status == StepStatus.succeeded and steps["b"].output == "late"
    assert spent(budget_id) == USD + 7  # the call was paid: it counts


def test_the_reconciler_closes_a_budget_exceeded_run_left_open(sqlite_db: str) -> None:
    run_id, ids = submit(setup_workflow(JOIN))
    with session_scope() as session:
        session.execute(
            update(StepRun).where(StepRun.run_id == run_id).values(status=StepStatus.skipped)
        )
        session.execute(
            update(Run).where(Run.id == run_id).values(status=RunStatus.budget_exceeded)
        )
    assert close_finished_runs() == 1
    run, _ = load(run_id)
    assert run.status == RunStatus.budget_exceeded and run.finished_at is not None


def test_the_soft_limit_webhook_is_called_once_after_the_commit(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = setup_workflow([{"id": "solo", "agent": "writer", "prompt": "S"}])
    budget_id = add_budget("soft", 5 * USD // 2, soft_limit_percent=50)
    seen: list[tuple[str, int, int, bool]] = []

    def on_soft_limit(budget: str, *, spent_nanos: int, limit_nanos: int) -> None:
        with session_scope() as session:  # another connection: sees only committed rows
            row = session.exec(select(BudgetUsage).where(BudgetUsage.budget_id == budget)).one()
            seen.append((budget, spent_nanos, limit_nanos, row.soft_warned_at is not None))

    monkeypatch.setattr(webhooks, "on_budget_soft_limit", on_soft_limit)
    statuses = []
    for _ in range(4):  # $1 (40%), $2 (80%: warns), $3 (spent), then refused
        run_id, ids = submit(workflow_id)
        execute.execute_step(ids["solo"])
        statuses.append(load(run_id)[0].status)
    assert seen == [(budget_id, 2 * USD, 5 * USD // 2, True)]
    assert statuses == ["succeeded"] * 3 + ["budget_exceeded"]
    assert len(provider.calls) == 3
