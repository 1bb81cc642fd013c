"""Events become deliveries: once per webhook and subject, only for webhooks that
existed when it happened, with payloads that hold no prompt, input or output."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from shared import webhooks
from shared.automation_models import (
    Batch,
    BatchItem,
    Budget,
    BudgetUsage,
    WebhookDelivery,
)
from shared.db import read_session, session_scope
from shared.models import utcnow
from tests.factories import make_closed_run, make_webhook, make_workflow

STEPS = [{"id": "s", "agent": "a", "prompt": "p"}]


class FakeCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any]) -> None:
        self.sent.append((name, args))


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeCelery:
    fake = FakeCelery()
    monkeypatch.setattr(webhooks, "get_celery", lambda: fake)
    webhooks.forget_subscribers()
    return fake


def deliveries() -> list[WebhookDelivery]:
    with read_session() as session:
        return list(session.exec(select(WebhookDelivery)).all())


def test_a_closed_run_makes_one_delivery_per_webhook_even_when_heard_twice(
    sqlite_db: str, broker: FakeCelery
) -> None:
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=STEPS)
        hooks = [
            make_webhook(
                session, target_type="workflow", target_id=workflow.id, url=f"http://r/{i}"
            )
            for i in range(2)
        ]
        other = make_workflow(session, name="other", steps=STEPS)
        make_webhook(session, target_type="workflow", target_id=other.id)
        run = make_closed_run(
            session, workflow, input={"text": "CUSTOMER-SECRET"}, cost_nanos=1_500_000
        )

    webhooks.on_run_closed(run.id)
    webhooks.on_run_closed(run.id)  # a duplicate run_closed message

    rows = deliveries()
    assert sorted(r.url for r in rows) == ["http://r/0", "http://r/1"]
    assert {r.subscription_id for r in rows} == {h.id for h in hooks}
    assert all(r.event == "run.finished" and r.subject_id == run.id for r in rows)
    assert all(r.status == "pending" and r.attempts == 1 for r in rows)
    # Only the first hearing sent the first attempts; the message is ids only.
    assert sorted(broker.sent) == sorted(("ownkey.webhook_deliver", [r.id, 1]) for r in rows)
    data = rows[0].payload["run"]
    assert data["id"] == run.id and data["status"] == "succeeded"
    assert data["workflow"] == {"id": workflow.id, "name": "wf"}
    assert data["cost_usd"] == 0.0015 and data["input_tokens"] == 100
    assert "CUSTOMER-SECRET" not in json.dumps(rows[0].payload)
    assert not {"input", "output", "outputs", "prompt"} & set(data)


def test_an_open_run_or_a_workflow_without_webhooks_makes_nothing(
    sqlite_db: str, broker: FakeCelery
) -> None:
    with session_scope() as session:
        quiet = make_workflow(session, name="quiet", steps=STEPS)
        closed = make_closed_run(session, quiet)
        watched = make_workflow(session, name="watched", steps=STEPS)
        make_webhook(session, target_type="workflow", target_id=watched.id)
        still_open = make_closed_run(session, watched)
        still_open.finished_at = None
        session.add(still_open)
    webhooks.on_run_closed(closed.id)
    webhooks.on_run_closed(still_open.id)
    webhooks.on_run_closed("no-such-run")
    assert deliveries() == [] and broker.sent == []


def test_a_webhook_added_after_the_run_closed_does_not_hear_of_it(
    sqlite_db: str, broker: FakeCelery
) -> None:
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=STEPS)
        run = make_closed_run(session, workflow, finished_at=utcnow() - timedelta(minutes=5))
        make_webhook(session, target_type="workflow", target_id=workflow.id)
    webhooks.on_run_closed(run.id)
    assert deliveries() == []


def test_the_subscriber_list_is_cached_and_fails_open(
    sqlite_db: str, broker: FakeCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=STEPS)
    assert webhooks.workflow_has_subscribers(workflow.id) is False
    with session_scope() as session:
        make_webhook(session, target_type="workflow", target_id=workflow.id)
    # Within the cache's few seconds the answer is the old one (the sweep covers it)...
    assert webhooks.workflow_has_subscribers(workflow.id) is False
    webhooks.forget_subscribers()
    assert webhooks.workflow_has_subscribers(workflow.id) is True
    assert webhooks.workflow_has_subscribers("another") is False

    def broken() -> Any:
        raise ConnectionError("database away")

    webhooks.forget_subscribers()
    monkeypatch.setattr(webhooks, "read_session", broken)
    # ...and a database that cannot be read means "maybe": a follow-up, not a lost call.
    assert webhooks.workflow_has_subscribers("another") is True


def test_a_finished_batch_is_heard_by_its_webhooks_and_its_workflows(
    sqlite_db: str, broker: FakeCelery
) -> None:
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=STEPS)
        batch = Batch(workflow_id=workflow.id, name="nightly", status="running", total=3)
        session.add(batch)
        session.flush()
        by_batch = make_webhook(session, target_type="batch", target_id=batch.id)
        by_workflow = make_webhook(session, target_type="workflow", target_id=workflow.id)
        ok = make_closed_run(session, workflow, batch_id=batch.id, cost_nanos=2_000)
        failed = make_closed_run(session, workflow, status="failed", batch_id=batch.id)
        retried = make_closed_run(session, workflow, status="failed", batch_id=batch.id)
        for position, run_id in ((1, ok.id), (2, failed.id), (3, None)):
            session.add(BatchItem(batch_id=batch.id, position=position, input={}, run_id=run_id))
        assert retried.id  # an earlier run of item 2: counted in the cost, not the counts

    webhooks.on_batch_finished(batch.id)
    assert deliveries() == []  # still running

    with session_scope() as session:
        stored = session.get(Batch, batch.id)
        assert stored is not None
        stored.status, stored.finished_at = "finished", utcnow()
        session.add(stored)
    webhooks.on_batch_finished(batch.id)
    webhooks.on_batch_finished(batch.id)

    rows = deliveries()
    assert {r.subscription_id for r in rows} == {by_batch.id, by_workflow.id} and len(rows) == 2
    data = rows[0].payload["batch"]
    assert data["status"] == "finished" and data["name"] == "nightly"
    assert data["counts"] == {"total": 3, "succeeded": 1, "failed": 1, "not_run": 1}
    assert data["input_tokens"] == 300 and data["cost_usd"] == 0.000002


def test_a_budget_warns_its_webhooks_once_per_window(sqlite_db: str, broker: FakeCelery) -> None:
    now = utcnow()
    with session_scope() as session:
        budget = Budget(name="monthly", scope="instance", limit_nanos=10_000_000_000)
        session.add(budget)
        session.flush()
        make_webhook(
            session, target_type="budget", target_id=budget.id, created_at=now - timedelta(1)
        )
        window = BudgetUsage(
            budget_id=budget.id,
            window_start=now.replace(day=1),
            spent_nanos=8_000_000_000,
            soft_warned_at=now,
        )
        session.add(window)

    for _ in range(2):
        webhooks.on_budget_soft_limit(
            budget.id, spent_nanos=8_000_000_000, limit_nanos=10_000_000_000
        )

    [row] = deliveries()
    assert row.event == "budget.soft_limit" and row.subject_id == window.id
    data = row.payload["budget"]
    assert data["name"] == "monthly" and data["spent_usd"] == 8.0 and data["limit_usd"] == 10.0
    assert data["percent_used"] == 80.0
