"""The webhooks' SQL on both databases: a duplicate event inserts nothing (ON CONFLICT,
written per dialect), a due attempt is claimed once, and the sweep's catch-up queries
and the batch payload's aggregates run on PostgreSQL as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from shared import webhook_store, webhooks
from shared.automation_models import Batch, BatchItem, WebhookDelivery
from shared.config import get_settings
from shared.db import engine_for, read_session, session_scope, transaction
from shared.migrate import upgrade_database
from shared.models import utcnow
from tests.factories import make_closed_run, make_webhook, make_workflow
from tests.integration.conftest import postgres_url
from worker.webhook_sweep import catch_up

LATER = timedelta(seconds=webhook_store.CLAIM_LEASE_SECONDS + 1)


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    databases = postgres_url() if request.param == "postgres" else None
    url = next(databases) if databases else f"sqlite:///{tmp_path / 'hooks.db'}"
    upgrade_database(url)
    monkeypatch.setenv("OWNKEY_DATABASE_URL", url)
    get_settings.cache_clear()
    monkeypatch.setattr(webhooks, "enqueue_attempts", lambda attempts: None)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        if databases:
            next(databases, None)


def deliveries() -> list[WebhookDelivery]:
    with read_session() as session:
        return list(session.exec(select(WebhookDelivery)).all())


def test_events_are_delivered_once_and_attempts_claimed_once(database: str) -> None:
    earlier = utcnow() - timedelta(minutes=5)
    with session_scope() as session:
        workflow = make_workflow(session, name="wf", steps=[])
        make_webhook(session, target_type="workflow", target_id=workflow.id, created_at=earlier)
        announced = make_closed_run(session, workflow)
        unannounced = make_closed_run(session, workflow, finished_at=earlier + timedelta(minutes=3))
        batch = Batch(workflow_id=workflow.id, status="succeeded", total=1, finished_at=utcnow())
        session.add(batch)
        session.flush()
        session.add(BatchItem(batch_id=batch.id, position=1, input={}, run_id=announced.id))

    webhooks.on_run_closed(announced.id)
    webhooks.on_run_closed(announced.id)
    webhooks.on_batch_finished(batch.id)
    assert catch_up(utcnow()) == 1  # the run whose close nobody announced
    assert catch_up(utcnow()) == 0

    rows = deliveries()
    assert sorted((r.event, r.subject_id) for r in rows) == sorted(
        [
            ("run.finished", announced.id),
            ("run.finished", unannounced.id),
            ("batch.finished", batch.id),
        ]
    )
    batch_row = next(r for r in rows if r.event == "batch.finished")
    assert batch_row.payload["batch"]["counts"] == {"total": 1, "succeeded": 1}

    first = rows[0]
    with transaction() as db:
        claims = [
            webhook_store.claim(db, first.id, seen_attempts=1, now=utcnow() + LATER)
            for _ in range(2)
        ]
    assert claims == [webhook_store.Attempt(first.id, 2), None]
