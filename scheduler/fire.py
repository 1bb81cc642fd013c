"""The schedules tick: fire every schedule whose time has come, each fire time once.

Beat only sends the tick; everything here reads SQL, so a schedule created, changed or
paused through the API counts from the next tick on. Each due schedule fires in its own
transaction:

1. lock the schedule's row (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the write
   transaction, BEGIN IMMEDIATE, already excludes every other writer) and re-read it;
2. insert the `schedule_fires` row for the fire time. Its UNIQUE (schedule, fire time)
   is the guarantee that a second beat's tick firing the same time fails here and rolls
   back, creating nothing;
3. create the run (or the dataset's batch) in a savepoint: a workflow that cannot run
   any more leaves its reason on the fire row, and the schedule moves on;
4. move `next_fire_at`, commit; only then enqueue the run's ready steps (or release the
   batch's first items), so a worker never gets a step it cannot see.

One schedule's failure is logged and does not stop the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from scheduler.cron import CronSchedule
from scheduler.misfire import misfire_grace, plan_fire
from shared import batches
from shared.automation_models import Schedule, ScheduleFire
from shared.config import get_settings
from shared.db import read_session, session_scope
from shared.models import utcnow
from shared.queues import QueuedStep
from shared.runs import create_run
from worker.dispatch import enqueue_steps

__all__ = ["Fired", "fire_due_schedules", "fire_schedule"]

log = logging.getLogger(__name__)
# Due schedules fired per tick; any beyond wait for the next tick.
DUE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Fired:
    """One fire time that ran (or tried to: then `error` says why not)."""

    schedule_id: str
    fire_time: datetime
    run_id: str | None = None
    batch_id: str | None = None
    error: str | None = None
    ready_steps: list[QueuedStep] = field(default_factory=list)


class _AlreadyFired(Exception):
    """Another tick recorded this fire time first."""


def fire_due_schedules(*, now: datetime | None = None) -> list[Fired]:
    """One tick. `now` is for tests; by default each schedule reads the clock once it
    holds its row."""
    grace = misfire_grace(get_settings().schedule_tick_seconds)
    fired = []
    for schedule_id in _due_schedule_ids(now or utcnow()):
        try:
            outcome = fire_schedule(schedule_id, grace=grace, now=now)
        except Exception:
            log.exception("schedule %s could not fire; the next tick tries again", schedule_id)
            continue
        if outcome is not None:
            fired.append(outcome)
    return fired


def _due_schedule_ids(now: datetime) -> list[str]:
    with read_session() as session:
        return list(
            session.exec(
                select(Schedule.id)
                .where(Schedule.enabled, col(Schedule.next_fire_at) <= now)
                .order_by(col(Schedule.next_fire_at))
                .limit(DUE_BATCH)
            ).all()
        )


def fire_schedule(
    schedule_id: str, *, grace: timedelta, now: datetime | None = None
) -> Fired | None:
    """Fire the schedule if it is due: its run (or batch) is created and enqueued, once
    per fire time. None if nothing was due, or another tick fired it first."""
    try:
        with session_scope() as session:
            fired = _fire_locked(session, schedule_id, grace=grace, now=now)
    except _AlreadyFired:
        log.info("schedule %s: another tick fired this time already", schedule_id)
        return None
    if fired is None:
        return None
    if fired.ready_steps:
        enqueue_steps(fired.ready_steps)
    if fired.batch_id is not None:
        _release_first_items(fired.batch_id)
    return fired


def _fire_locked(
    session: Session, schedule_id: str, *, grace: timedelta, now: datetime | None
) -> Fired | None:
    schedule = session.exec(
        select(Schedule).where(Schedule.id == schedule_id).with_for_update()
    ).first()
    if schedule is None or not schedule.enabled or schedule.next_fire_at is None:
        return None  # deleted or paused since the tick listed it
    moment = now or utcnow()
    if schedule.next_fire_at > moment:
        return None  # another tick fired it while this one waited for the lock
    try:
        cron = CronSchedule(schedule.cron, schedule.timezone)
    except ValueError as exc:
        # The API checks both; a row written around it, or a zone that left the system's
        # tz database in an upgrade, stops here rather than failing at every tick.
        log.error("schedule %s stops: %s; change it to fire again", schedule.id, exc)
        schedule.next_fire_at = None
        session.add(schedule)
        return None
    plan = plan_fire(
        cron,
        due_since=schedule.next_fire_at,
        now=moment,
        policy=schedule.misfire_policy,
        grace=grace,
    )
    if plan.skipped:
        log.info(
            "schedule %s: fire times from %s skipped (misfire policy skip)",
            schedule.id,
            schedule.next_fire_at.isoformat(),
        )
    schedule.next_fire_at = plan.next_fire_at
    session.add(schedule)
    if plan.fire_time is None:
        return None
    fire = ScheduleFire(
        schedule_id=schedule.id,
        fire_time=plan.fire_time,
        missed=[t.isoformat() for t in plan.missed],
    )
    session.add(fire)
    try:
        session.flush()
    except IntegrityError as exc:
        raise _AlreadyFired from exc
    fired = _start(session, schedule, plan.fire_time)
    fire.run_id, fire.batch_id, fire.error = fired.run_id, fired.batch_id, fired.error
    schedule.last_fire_at = plan.fire_time
    session.add_all([fire, schedule])
    log.info("schedule %s fired for %s: %s", schedule.id, plan.fire_time.isoformat(), _what(fired))
    return fired


def _start(session: Session, schedule: Schedule, fire_time: datetime) -> Fired:
    """Create the fire time's run, or its batch for a dataset, in a savepoint: if it
    cannot be created, nothing of it stays and the reason is returned instead."""
    try:
        with session.begin_nested():
            if schedule.dataset is not None:
                batch_id = batches.create_batch(
                    session,
                    workflow=schedule.workflow_id,
                    items=schedule.dataset,
                    max_in_flight=schedule.max_in_flight,
                    name=f"{schedule.name} {fire_time.isoformat()}",
                    schedule_id=schedule.id,
                )
                return Fired(schedule.id, fire_time, batch_id=batch_id)
            created = create_run(session, workflow=schedule.workflow_id, input=schedule.input or {})
            return Fired(
                schedule.id, fire_time, run_id=created.run_id, ready_steps=created.ready_steps
            )
    except OperationalError:
        raise  # the database is away: nothing is recorded, the next tick tries again
    except ValueError as exc:  # RunRejected and the batches' own refusals say why
        return Fired(schedule.id, fire_time, error=str(exc))
    except Exception as exc:
        log.exception("schedule %s: the run for %s could not be created", schedule.id, fire_time)
        return Fired(
            schedule.id,
            fire_time,
            error=f"the run could not be created ({type(exc).__name__}); see the worker's log",
        )


def _what(fired: Fired) -> str:
    if fired.error is not None:
        return f"failed: {fired.error}"
    return f"run {fired.run_id}" if fired.run_id else f"batch {fired.batch_id}"


def _release_first_items(batch_id: str) -> None:
    """After the commit, as for a run's steps. If the broker is away, the batches sweep
    releases them later."""
    try:
        batches.release_waiting(batch_id)
    except Exception:
        log.exception("batch %s: its first items wait for the batches sweep", batch_id)
