"""The sweep: a due delivery is claimed once however many sweeps run; a last attempt
that never reported back is failed; events nobody announced get their deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from shared import webhook_store, webhooks
from shared.automation_models import Batch, Budget, BudgetUsage, WebhookDelivery
from shared.config import get_settings
from shared.db import read_session, session_scope, transaction
from shared.models import utcnow
from tests.factories import make_closed_run, make_webhook, make_workflow
from worker.webhook_sweep import catch_up, send_due

LEASE = timedelta(seconds=webhook_store.CLAIM_LEASE_SECONDS)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "enqueue_attempts", lambda attempts: None)


def rows() -> list[WebhookDelivery]:
    with read_session() as session:
        return list(session.exec(select(WebhookDelivery)).all())


def closed_run_with_webhook(*, closed_ago: timedelta) -> str:
    now = utcnow()
    with session_scope() as session:
        workflow = make_workflow(session, name=f"wf-{closed_ago.total_seconds()}", steps=[])
        make_webhook(
            session,
            target_type="workflow",
            target_id=workflow.id,
            created_at=now - closed_ago - timedelta(minutes=1),
        )
        return make_closed_run(session, workflow, finished_at=now - closed_ago).id


def test_of_two_claims_of_one_due_attempt_one_wins(sqlite_db: str) -> None:
    run_id = closed_run_with_webhook(closed_ago=timedelta(minutes=1))
    webhooks.on_run_closed(run_id)
    [row] = rows()
    later = utcnow() + LEASE + timedelta(seconds=1)
    with transaction() as db:
        first = webhook_store.claim(db, row.id, seen_attempts=1, now=later)
        second = webhook_store.claim(db, row.id, seen_attempts=1, now=later)
    assert first == webhook_store.Attempt(row.id, 2) and second is None
    # A sweep at the same moment finds nothing due: the claim moved the next attempt.
    assert send_due(later) == 0


def test_a_last_attempt_that_never_reported_back_is_failed(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWNKEY_WEBHOOK_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    run_id = closed_run_with_webhook(closed_ago=timedelta(minutes=1))
    webhooks.on_run_closed(run_id)
    assert send_due(utcnow() + timedelta(seconds=60)) == 0  # its lease still holds
    assert rows()[0].status == "pending"
    assert send_due(utcnow() + LEASE + timedelta(seconds=1)) == 0
    [row] = rows()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "worker stopped" in row.last_error


def test_runs_whose_close_was_not_announced_are_caught_up_once(sqlite_db: str) -> None:
    missed = closed_run_with_webhook(closed_ago=timedelta(minutes=2))
    just_closed = closed_run_with_webhook(closed_ago=timedelta(seconds=1))
    too_old = closed_run_with_webhook(closed_ago=timedelta(hours=2))

    assert catch_up(utcnow()) == 1
    assert [(r.subject_id, r.attempts) for r in rows()] == [(missed, 1)]
    assert catch_up(utcnow()) == 0
    assert {just_closed, too_old}.isdisjoint(r.subject_id for r in rows())


def test_finished_batches_and_budget_warnings_are_caught_up(sqlite_db: str) -> None:
    now = utcnow()
    earlier = now - timedelta(minutes=10)
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=[])
        finished_at = now - timedelta(minutes=1)
        batch = Batch(workflow_id=workflow.id, status="succeeded", finished_at=finished_at)
        budget = Budget(name="b", scope="instance", limit_nanos=100)
        session.add_all([batch, budget])
        session.flush()
        make_webhook(session, target_type="batch", target_id=batch.id, created_at=earlier)
        make_webhook(session, target_type="budget", target_id=budget.id, created_at=earlier)
        usage = BudgetUsage(
            budget_id=budget.id,
            window_start=now.replace(day=1),
            spent_nanos=90,
            soft_warned_at=now - timedelta(minutes=1),
        )
        session.add(usage)

    assert catch_up(now) == 2
    assert sorted((r.event, r.subject_id) for r in rows()) == sorted(
        [("batch.finished", batch.id), ("budget.soft_limit", usage.id)]
    )
    assert catch_up(now) == 0
