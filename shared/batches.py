"""Batches: one run per dataset item, released as in-flight slots free up.

Accepting a batch writes the batch and all its items in one bulk insert and creates no
run: a batch of 10,000 items costs one transaction, and Redis sees only the steps of
the `max_in_flight` runs that are started. `release_waiting` turns waiting items into
runs while the batch has free slots; it runs after the batch is accepted, after each of
its runs closes (worker/batch_release.py) and from beat's sweep, in case a close was
not heard.

Releasing holds the batch's row lock (`FOR UPDATE` on PostgreSQL; SQLite serialises
writers with `BEGIN IMMEDIATE`), so workers closing runs at once never start more runs
than there are free slots. The same transaction finishes the batch once no item waits
and none of its runs is open; `webhooks.on_batch_finished` is called after the commit.

A run takes the workflow's current version when its item is released.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, or_, select, update
from sqlmodel import Session

from shared import webhooks
from shared.automation_models import Batch, BatchItem, BatchStatus
from shared.db import transaction
from shared.models import Run, RunStatus, Workflow, new_id, utcnow
from shared.queues import QueuedStep
from shared.runs import RunRejected, create_run
from worker.dispatch import enqueue_steps

__all__ = [
    "MAX_IN_FLIGHT",
    "RETRYABLE_RUN_STATUSES",
    "BatchNotRetryable",
    "create_batch",
    "lock_batch",
    "release_waiting",
    "retry_failed",
]

log = logging.getLogger(__name__)

BATCHES = cast(Table, Batch.__table__)  # type: ignore[attr-defined]
ITEMS = cast(Table, BatchItem.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
WORKFLOWS = cast(Table, Workflow.__table__)  # type: ignore[attr-defined]

# Runs started at once by one release; more slots than this would make the release
# that starts a batch (in the API request) slow.
MAX_IN_FLIGHT = 1000
# What "retry failed" gives a new run: every outcome but success.
RETRYABLE_RUN_STATUSES = (RunStatus.failed, RunStatus.budget_exceeded, RunStatus.cancelled)

Database = Session | Connection

WORKFLOW_ID = select(WORKFLOWS.c.id).where(
    or_(WORKFLOWS.c.id == bindparam("ref"), WORKFLOWS.c.name == bindparam("ref"))
)
LOCK_BATCH = (
    select(BATCHES.c.status, BATCHES.c.workflow_id, BATCHES.c.max_in_flight)
    .where(BATCHES.c.id == bindparam("batch_id"))
    .with_for_update()
)
OPEN_RUNS = (
    select(func.count())
    .select_from(RUNS)
    .where(RUNS.c.batch_id == bindparam("batch_id"), RUNS.c.finished_at.is_(None))
)
WAITING_ITEMS = (
    select(ITEMS.c.id, ITEMS.c.input)
    .where(ITEMS.c.batch_id == bindparam("batch_id"), ITEMS.c.run_id.is_(None))
    .order_by(ITEMS.c.position)
    .limit(bindparam("free"))
)
UNSUCCESSFUL_ITEMS = (
    select(func.count())
    .select_from(ITEMS.join(RUNS, RUNS.c.id == ITEMS.c.run_id))
    .where(ITEMS.c.batch_id == bindparam("batch_id"), RUNS.c.status != RunStatus.succeeded)
)
SET_ITEM_RUN = (
    update(ITEMS).where(ITEMS.c.id == bindparam("item_id")).values(run_id=bindparam("new_run"))
)
INSERT_ITEMS = insert(ITEMS)


class BatchNotRetryable(Exception):
    """A cancelled batch stays cancelled: its waiting items must never start."""


def create_batch(
    session: Database,
    *,
    workflow: str,
    items: list[dict[str, Any]],
    max_in_flight: int,
    name: str | None = None,
    schedule_id: str | None = None,
    positions: list[int] | None = None,
) -> str:
    """Store a batch of `items` (each one run's input) for `workflow` (id or name) in the
    caller's transaction and return its id; the caller releases the first items after
    its commit with `release_waiting(batch_id)`.

    `positions` are the items' line numbers in their dataset (default 1, 2, ...).
    Raises `RunRejected` naming the field for an unknown workflow, no items or a
    `max_in_flight` outside 1..MAX_IN_FLIGHT. The items are not checked against the
    workflow's prompts here: shared/datasets.py does that where a user can fix them."""
    workflow_id = session.execute(WORKFLOW_ID, {"ref": workflow}).scalar()
    if workflow_id is None:
        raise RunRejected(f"no workflow with id or name '{workflow}'", field="workflow")
    if not items:
        raise RunRejected("a batch needs at least one item", field="dataset")
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise RunRejected(
            f"max_in_flight must be between 1 and {MAX_IN_FLIGHT}", field="max_in_flight"
        )
    lines = positions or list(range(1, len(items) + 1))
    if len(lines) != len(items) or len(set(lines)) != len(lines):
        raise ValueError("positions must be distinct, one per item")
    columns: dict[str, None] = {}
    for item in items:
        columns.update(dict.fromkeys(item))
    batch_id = new_id()
    session.execute(
        insert(BATCHES),
        {
            "id": batch_id,
            "name": name,
            "workflow_id": workflow_id,
            "status": BatchStatus.running,
            "max_in_flight": max_in_flight,
            "total": len(items),
            "input_columns": list(columns),
            "schedule_id": schedule_id,
            "created_at": utcnow(),
        },
    )
    # One executemany for all the items (SQLAlchemy batches it into multi-row INSERTs).
    session.execute(
        INSERT_ITEMS,
        [
            {
                "id": new_id(),
                "batch_id": batch_id,
                "position": line,
                "input": item,
                "run_id": None,
                "previous_run_ids": [],
            }
            for line, item in zip(lines, items, strict=True)
        ],
    )
    return batch_id


def lock_batch(db: Connection, batch_id: str) -> Any:
    """The batch's status, workflow and max_in_flight, its row locked until the
    transaction ends. Raises LookupError for an unknown batch."""
    row = db.execute(LOCK_BATCH, {"batch_id": batch_id}).first()
    if row is None:
        raise LookupError(batch_id)
    return row


@dataclass(slots=True)
class _Released:
    count: int = 0
    ready_steps: list[QueuedStep] = field(default_factory=list)
    finished: bool = False


def _release(db: Connection, batch_id: str) -> _Released:
    """Start runs for waiting items into the free slots, under the batch's row lock."""
    try:
        batch = lock_batch(db, batch_id)
    except LookupError:
        return _Released()
    if batch.status != BatchStatus.running:
        return _Released()
    open_runs = int(db.execute(OPEN_RUNS, {"batch_id": batch_id}).scalar_one())
    free = batch.max_in_flight - open_runs
    waiting = db.execute(WAITING_ITEMS, {"batch_id": batch_id, "free": max(free, 1)}).all()
    if not waiting:
        if open_runs == 0:
            _finish(db, batch_id)
            return _Released(finished=True)
        return _Released()
    if free <= 0:
        return _Released()
    released = _Released()
    assignments: list[dict[str, str]] = []
    for item in waiting:
        created = create_run(db, workflow=batch.workflow_id, input=item.input)
        assignments.append({"item_id": item.id, "new_run": created.run_id})
        released.ready_steps.extend(created.ready_steps)
    run_ids = [a["new_run"] for a in assignments]
    db.execute(update(RUNS).where(RUNS.c.id.in_(run_ids)).values(batch_id=batch_id))
    db.execute(SET_ITEM_RUN, assignments)
    db.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id, BATCHES.c.started_at.is_(None))
        .values(started_at=utcnow())
    )
    released.count = len(assignments)
    return released


def _finish(db: Connection, batch_id: str) -> None:
    """Every item's run has closed: the batch succeeded, or finished with failures."""
    failures = int(db.execute(UNSUCCESSFUL_ITEMS, {"batch_id": batch_id}).scalar_one())
    db.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id)
        .values(
            status=BatchStatus.finished if failures else BatchStatus.succeeded,
            finished_at=utcnow(),
        )
    )


def release_waiting(batch_id: str) -> int:
    """Start runs for waiting items while the batch has free in-flight slots, and
    finish the batch when nothing is left to run; returns how many runs started.
    Safe to call at any time, from any number of processes at once."""
    try:
        with transaction() as db:
            released = _release(db, batch_id)
    except RunRejected as exc:
        # The workflow lost an agent since the batch was accepted. Nothing is written;
        # the items wait (the sweep tries again), so restoring the agent resumes them.
        log.warning("batch %s cannot start its items: %s", batch_id, exc)
        return 0
    enqueue_steps(released.ready_steps)
    if released.finished:
        webhooks.on_batch_finished(batch_id)
    return released.count


def retry_failed(db: Connection, batch_id: str) -> int:
    """Give the items whose run ended without success a new run (in the caller's
    transaction; the caller calls `release_waiting` after its commit). The old run id
    is kept in `previous_run_ids`. A finished batch runs again.

    Raises LookupError for an unknown batch and BatchNotRetryable for a cancelled one."""
    batch = lock_batch(db, batch_id)
    if batch.status == BatchStatus.cancelled:
        raise BatchNotRetryable(batch_id)
    failed = db.execute(
        select(ITEMS.c.id, ITEMS.c.run_id, ITEMS.c.previous_run_ids)
        .select_from(ITEMS.join(RUNS, RUNS.c.id == ITEMS.c.run_id))
        .where(
            ITEMS.c.batch_id == batch_id,
            RUNS.c.status.in_(RETRYABLE_RUN_STATUSES),
            RUNS.c.finished_at.is_not(None),
        )
    ).all()
    if not failed:
        return 0
    db.execute(
        update(ITEMS)
        .where(ITEMS.c.id == bindparam("item_id"))
        .values(run_id=None, previous_run_ids=bindparam("previous")),
        [
            {"item_id": item.id, "previous": [*item.previous_run_ids, item.run_id]}
            for item in failed
        ],
    )
    db.execute(
        update(BATCHES)
        .where(BATCHES.c.id == batch_id)
        .values(status=BatchStatus.running, finished_at=None)
    )
    return len(failed)
