"""The reconciler: a beat task that makes sure no run is stranded.

- A step queued in SQL for longer than `requeue_after_seconds` whose message is not in
  its queue (lost in a Redis restart without persistence, or never sent because the
  broker was down after the commit) is enqueued again, on that queue. Only the queues
  such steps use are read: one step per queue is enough to make the scan look there.
- A step running under an expired lease (its worker died, or hung past its timeout) is
  enqueued again; the claim takes it over and a late result from the old worker is
  discarded.
- A run whose every step is final but which is still open (a crash between writes) is
  closed.

Re-enqueueing is always safe: the claim is a conditional update, so a duplicate message
finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import redis
from sqlalchemy import and_, exists, or_, select

from shared.config import get_settings
from shared.db import read_session, transaction
from shared.models import FINAL_STEP_STATUSES, RunStatus, StepStatus, utcnow
from shared.queues import QueuedStep
from shared.task_labels import step_label
from worker import lifecycle
from worker.broker_scan import step_ids_in_broker
from worker.dispatch import enqueue_steps
from worker.run_events import announce_closed

log = logging.getLogger(__name__)
BATCH = 5000


def stale_queued_and_expired_steps(
    *, requeue_after_seconds: float
) -> tuple[list[QueuedStep], list[QueuedStep]]:
    now = utcnow()
    stale = now - timedelta(seconds=requeue_after_seconds)
    steps = lifecycle.STEPS
    with read_session() as session:
        queued = session.execute(
            select(steps.c.id, steps.c.queue)
            .where(
                steps.c.status == StepStatus.queued,
                steps.c.queued_at < stale,
                or_(steps.c.not_before.is_(None), steps.c.not_before < stale),
            )
            .limit(BATCH)
        ).all()
        expired = session.execute(
            select(steps.c.id, steps.c.queue)
            .where(steps.c.status == StepStatus.running, steps.c.lease_expires_at < now)
            .limit(BATCH)
        ).all()
        return [QueuedStep(*row) for row in queued], [QueuedStep(*row) for row in expired]


def stranded_steps(
    *, requeue_after_seconds: float, in_broker: Callable[[str], set[str]]
) -> list[QueuedStep]:
    """Steps to enqueue again. `in_broker(queue)` answers which step ids have a message
    waiting in that queue; it is asked only about the queues stale steps use, once each."""
    queued, expired = stale_queued_and_expired_steps(requeue_after_seconds=requeue_after_seconds)
    waiting = {queue: in_broker(queue) for queue in {step.queue for step in queued}}
    return [step for step in queued if step.step_id not in waiting[step.queue]] + expired


def with_labels(stranded: list[QueuedStep]) -> list[QueuedStep]:
    """The stranded steps, named as Flower shows them: one query per tick, and only
    when something is stranded (off the per-step hot path)."""
    if not stranded:
        return []
    step_ids = [step.step_id for step in stranded]
    steps, runs, workflows = lifecycle.STEPS, lifecycle.RUNS, lifecycle.WORKFLOWS
    with read_session() as session:
        rows = session.execute(
            select(steps.c.id, steps.c.step_key, steps.c.agent_name, workflows.c.name)
            .select_from(
                steps.join(runs, runs.c.id == steps.c.run_id).join(
                    workflows, workflows.c.id == runs.c.workflow_id
                )
            )
            .where(steps.c.id.in_(step_ids))
        )
        labels = {
            row.id: step_label(workflow=row.name, step=row.step_key, agent=row.agent_name)
            for row in rows
        }
    return [replace(step, label=labels.get(step.step_id, "")) for step in stranded]


def close_finished_runs() -> int:
    """Close runs that are still open although every step is final."""
    runs, steps = lifecycle.RUNS, lifecycle.STEPS
    with read_session() as session:
        open_ids = list(
            session.execute(
                select(runs.c.id)
                .where(
                    runs.c.status.in_(
                        [
                            RunStatus.queued,
                            RunStatus.running,
                            RunStatus.cancelled,
                            RunStatus.budget_exceeded,
                        ]
                    ),
                    runs.c.finished_at.is_(None),
                    ~exists().where(
                        and_(
                            steps.c.run_id == runs.c.id, steps.c.status.notin_(FINAL_STEP_STATUSES)
                        )
                    ),
                )
                .limit(BATCH)
            ).scalars()
        )
    for run_id in open_ids:
        with transaction() as db:
            status = lifecycle.lock_run_status(db, run_id)
            advance = lifecycle.advance_run(db, run_id, status, utcnow())
        if advance.closed:
            announce_closed(run_id)
    return len(open_ids)


def reconcile() -> int:
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        stranded = stranded_steps(
            requeue_after_seconds=settings.requeue_after_seconds,
            in_broker=lambda queue: step_ids_in_broker(client, [queue]),
        )
    finally:
        client.close()
    closed = close_finished_runs()
    if stranded or closed:
        log.info("reconciler: re-enqueued %d stranded steps, closed %d runs", len(stranded), closed)
    return enqueue_steps(with_labels(stranded))
