"""Releasing batch items into free slots, on SQLite and PostgreSQL: never more runs in
flight than `max_in_flight`, even with many workers closing runs at once; each item
runs once; the batch finishes once. Then the same through the real API and worker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from shared import batches, webhooks
from shared.automation_models import Batch, BatchItem, BatchStatus
from shared.config import get_settings
from shared.db import engine_for, read_session, session_scope, transaction
from shared.migrate import upgrade_database
from shared.models import Agent, Run, RunStatus, StepRun, utcnow
from tests.factories import make_agent, make_key, make_workflow
from tests.integration.conftest import postgres_url
from tests.integration.test_batches import (
    batch_workflow,
    max_concurrent_calls,
    wait_for_batch,
)
from tests.processes import FakeLLM, Stack
from worker import batch_release


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    databases = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'batches.db'}"
    else:
        databases = postgres_url()
        url = next(databases)
    monkeypatch.setenv("OWNKEY_DATABASE_URL", url)
    get_settings.cache_clear()
    upgrade_database(url)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        if databases is not None:
            next(databases, None)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What would reach the broker and the webhooks (no Redis needed here)."""
    record: dict[str, list[str]] = {"steps": [], "finished": []}
    lock = threading.Lock()

    def enqueue(steps: Any) -> int:
        assert all(step.label for step in steps)  # each step is named for Flower
        with lock:
            record["steps"].extend(step.step_id for step in steps)
        return len(record["steps"])

    def finished(batch_id: str) -> None:
        with lock:
            record["finished"].append(batch_id)

    monkeypatch.setattr(batches, "enqueue_steps", enqueue)
    monkeypatch.setattr(webhooks, "on_batch_finished", finished)
    return record


def _batch(items: int, max_in_flight: int) -> str:
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="writer")
        steps = [{"id": "s", "agent": "writer", "prompt": "Hi {{ input.n }}"}]
        workflow = make_workflow(session, name="wf", steps=steps)
        return batches.create_batch(
            session,
            workflow=workflow.name,
            items=[{"n": i} for i in range(items)],
            max_in_flight=max_in_flight,
        )


def _open_runs(batch_id: str) -> list[str]:
    with read_session() as session:
        return list(
            session.execute(
                select(Run.id).where(Run.batch_id == batch_id, Run.finished_at.is_(None))
            ).scalars()
        )


def _close(run_id: str) -> bool:
    """Close a run as a worker would; True for the one thread that closed it."""
    with transaction() as db:
        closed = db.execute(
            update(Run)
            .where(Run.id == run_id, Run.finished_at.is_(None))
            .values(status=RunStatus.succeeded, finished_at=utcnow())
        )
        return closed.rowcount == 1


def test_concurrent_releases_never_exceed_the_free_slots(
    database: str, sent: dict[str, list[str]]
) -> None:
    batch_id = _batch(items=10, max_in_flight=3)
    barrier = threading.Barrier(8)
    released: list[int] = []

    def release() -> None:
        barrier.wait()
        released.append(batches.release_waiting(batch_id))

    threads = [threading.Thread(target=release) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(released) == [0] * 7 + [3]
    assert len(_open_runs(batch_id)) == 3
    assert len(sent["steps"]) == 3  # one step per run, each sent once


def test_workers_closing_runs_at_once_keep_the_limit_and_finish_the_batch_once(
    database: str, sent: dict[str, list[str]]
) -> None:
    batch_id = _batch(items=40, max_in_flight=4)
    batches.release_waiting(batch_id)
    peaks: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                open_runs = _open_runs(batch_id)
                peaks.append(len(open_runs))
                if not open_runs:
                    with read_session() as session:
                        if session.get(Batch, batch_id).status != BatchStatus.running:
                            return
                    batch_release.sweep()  # as beat would, if a close went unheard
                    continue
                for run_id in open_runs:
                    if _close(run_id):
                        batch_release.on_run_closed(run_id)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert max(peaks) <= 4
    with read_session() as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        assert batch.status == BatchStatus.succeeded and batch.finished_at is not None
        run_ids = (
            session.execute(select(BatchItem.run_id).where(BatchItem.batch_id == batch_id))
            .scalars()
            .all()
        )
        assert None not in run_ids and len(set(run_ids)) == 40
        runs = session.execute(
            select(func.count()).select_from(Run).where(Run.batch_id == batch_id)
        ).scalar_one()
        assert runs == 40  # no item ever got a second run
        steps = (
            session.execute(
                select(StepRun.id)
                .join(Run, Run.id == StepRun.run_id)
                .where(Run.batch_id == batch_id)
            )
            .scalars()
            .all()
        )
    assert sorted(sent["steps"]) == sorted(steps)
    assert sent["finished"] == [batch_id]


def test_retry_gives_failed_items_new_runs_and_keeps_the_old_ones(
    database: str, sent: dict[str, list[str]]
) -> None:
    batch_id = _batch(items=3, max_in_flight=3)
    batches.release_waiting(batch_id)
    first = _open_runs(batch_id)
    with transaction() as db:
        db.execute(
            update(Run)
            .where(Run.id == first[0])
            .values(status=RunStatus.failed, finished_at=utcnow())
        )
    for run_id in first[1:]:
        _close(run_id)
    assert batches.release_waiting(batch_id) == 0
    with read_session() as session:
        assert session.get(Batch, batch_id).status == BatchStatus.finished
    with transaction() as db:
        assert batches.retry_failed(db, batch_id) == 1
    assert batches.release_waiting(batch_id) == 1
    with read_session() as session:
        assert session.get(Batch, batch_id).status == BatchStatus.running
        items = session.execute(select(BatchItem)).scalars().all()
    [item] = [i for i in items if i.previous_run_ids]
    assert item.previous_run_ids == [first[0]]
    assert item.run_id not in first and item.run_id in _open_runs(batch_id)
    _close(item.run_id)
    batches.release_waiting(batch_id)
    with read_session() as session:
        assert session.get(Batch, batch_id).status == BatchStatus.succeeded
    assert sent["finished"] == [batch_id, batch_id]


def test_the_sweep_finishes_a_batch_whose_last_close_went_unheard(
    database: str, sent: dict[str, list[str]]
) -> None:
    batch_id = _batch(items=2, max_in_flight=5)
    assert batches.release_waiting(batch_id) == 2
    for run_id in _open_runs(batch_id):
        _close(run_id)  # ... and no ownkey.run_closed arrives
    assert batch_release.sweep() == 0
    assert batch_release.sweep() == 0
    with read_session() as session:
        assert session.get(Batch, batch_id).status == BatchStatus.succeeded
    assert sent["finished"] == [batch_id]


def test_items_wait_without_a_trace_while_the_workflow_cannot_run(
    database: str, sent: dict[str, list[str]]
) -> None:
    batch_id = _batch(items=3, max_in_flight=2)
    with transaction() as db:  # the agent is renamed away from under the workflow
        db.execute(update(Agent).where(Agent.name == "writer").values(name="renamed"))
    assert batches.release_waiting(batch_id) == 0
    with read_session() as session:
        assert session.execute(select(func.count()).select_from(Run)).scalar_one() == 0
    with transaction() as db:
        db.execute(update(Agent).where(Agent.name == "renamed").values(name="writer"))
    assert batch_release.sweep() == 2
    assert len(sent["steps"]) == 2


@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
def test_a_real_worker_keeps_max_in_flight(stack: Stack, fake_llm: FakeLLM) -> None:
    fake_llm.configure(latency_seconds=0.4)
    try:
        with stack.client() as api:
            workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
            accepted = api.post(
                "/batches",
                json={
                    "workflow": workflow,
                    "dataset": [{"text": f"t{i}"} for i in range(12)],
                    "max_in_flight": 3,
                },
            )
            assert accepted.status_code == 202, accepted.text
            batch = wait_for_batch(api, accepted.json()["id"])
    finally:
        fake_llm.configure(latency_seconds=0.0)
    assert batch["status"] == "succeeded", batch
    assert batch["progress"]["succeeded"] == 12
    calls = fake_llm.calls()
    assert len(calls) == 24  # two steps per run
    assert 2 <= max_concurrent_calls(calls) <= 3
