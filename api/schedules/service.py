"""Schedules: a workflow run (or a batch over a dataset) at each fire time of a cron.

The API only writes the schedule and its `next_fire_at`; beat's tick reads them from SQL
(scheduler/fire.py), so every change counts from the next tick without restarting beat.
Pausing clears `next_fire_at`; resuming sets it to the next fire time from now, so the
fire times of a pause are never run, whatever the misfire policy (that policy is for
downtime, not for a deliberate pause).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.errors import Conflict, NotFound, Unprocessable, field_error
from api.schedules.schemas import (
    FirePublic,
    ScheduleCreate,
    ScheduleDetail,
    SchedulePublic,
    ScheduleUpdate,
)
from api.workflows.service import current_version, find_workflow
from scheduler.cron import CronSchedule
from shared import audit
from shared.audit import Actor
from shared.automation_models import Schedule, ScheduleFire
from shared.datasets import prompt_input_fields
from shared.models import Workflow, utcnow

NEXT_FIRE_TIMES_SHOWN = 5
RECENT_FIRES_SHOWN = 10


def _payload_errors(input: dict[str, Any] | None, dataset: Any) -> list[dict[str, Any]]:
    if input is not None and dataset is not None:
        return [field_error("dataset", "send input (one run) or dataset (a batch), not both")]
    if input is None and dataset is None:
        return [
            field_error(
                "input", "send input (one run per fire time) or dataset (a batch per fire time)"
            )
        ]
    return []


def _resolve_workflow(session: Session, ref: str, errors: list[dict[str, Any]]) -> Workflow | None:
    workflow = find_workflow(session, ref)
    if workflow is None:
        errors.append(field_error("workflow", f"no workflow with id or name '{ref}'"))
    return workflow


def _missing_inputs(
    session: Session,
    workflow: Workflow,
    input: dict[str, Any] | None,
    dataset: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Fields the workflow's prompts read that the input (or a dataset item) lacks:
    refused now, as batches refuse them, rather than failing at every fire."""
    steps = current_version(session, workflow).definition["steps"]
    needed = sorted(prompt_input_fields(step["prompt"] for step in steps))
    errors = []
    if input is not None:
        missing = [name for name in needed if name not in input]
        if missing:
            names = ", ".join(f"'{name}'" for name in missing)
            errors.append(
                field_error("input", f"missing {names}, which the workflow's prompts use")
            )
    for position, item in enumerate(dataset or [], start=1):
        missing = [name for name in needed if name not in item]
        if missing:
            names = ", ".join(f"'{name}'" for name in missing)
            errors.append(
                field_error(
                    ["dataset", str(position)],
                    f"item {position}: missing {names}, which the workflow's prompts use",
                )
            )
    return errors[:100]


def _next_fire_at(schedule: Schedule) -> datetime | None:
    if not schedule.enabled:
        return None
    return CronSchedule(schedule.cron, schedule.timezone).next_after(utcnow())


def create_schedule(*, session: Session, body: ScheduleCreate, actor: Actor) -> Schedule:
    errors: list[dict[str, Any]] = []
    workflow = _resolve_workflow(session, body.workflow, errors)
    errors += _payload_errors(body.input, body.dataset)
    if workflow is not None and not errors:
        errors += _missing_inputs(session, workflow, body.input, body.dataset)
    if errors or workflow is None:
        raise Unprocessable(errors)
    schedule = Schedule(
        workflow_id=workflow.id,
        name="",
        cron=body.cron,
        timezone=body.timezone,
        input=body.input,
        dataset=body.dataset,
        max_in_flight=body.max_in_flight,
        enabled=body.enabled,
        misfire_policy=body.misfire_policy,
    )
    schedule.name = body.name or f"{workflow.name[:91]}-{schedule.id[:8]}"
    _refuse_taken_name(session, schedule.name)
    schedule.next_fire_at = _next_fire_at(schedule)
    session.add(schedule)
    _flush(session, schedule.name)
    _audit(session, actor, "schedule.created", schedule, _settings(schedule, workflow))
    return schedule


def get_schedule(*, session: Session, schedule_id: str, lock: bool = False) -> Schedule:
    """By id, or by name. `lock` holds the row until the commit, so a change and the
    tick firing the schedule never interleave (PostgreSQL; SQLite has one writer)."""
    query = select(Schedule).where(Schedule.id == schedule_id)
    schedule = session.exec(query.with_for_update() if lock else query).first()
    if schedule is None:
        query = select(Schedule).where(Schedule.name == schedule_id)
        schedule = session.exec(query.with_for_update() if lock else query).first()
    if schedule is None:
        raise NotFound(f"no schedule with id or name '{schedule_id}'")
    return schedule


def list_schedules(*, session: Session) -> list[Schedule]:
    return list(session.exec(select(Schedule).order_by(col(Schedule.name))).all())


def update_schedule(
    *, session: Session, schedule_id: str, body: ScheduleUpdate, actor: Actor
) -> Schedule:
    """Change what was sent. A new cron, time zone or `enabled` recomputes the next fire
    time from now; the other fields leave it alone."""
    schedule = get_schedule(session=session, schedule_id=schedule_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    errors: list[dict[str, Any]] = []
    if "workflow" in changes:
        workflow = _resolve_workflow(session, changes.pop("workflow"), errors)
        if workflow is not None:
            changes["workflow_id"] = workflow.id
    if "input" in changes or "dataset" in changes:
        input, dataset = changes.get("input"), changes.get("dataset")
        errors += _payload_errors(input, dataset)
        changes["input"], changes["dataset"] = input, dataset
    if not errors and ({"workflow_id", "input", "dataset"} & changes.keys()):
        target = session.get(Workflow, changes.get("workflow_id", schedule.workflow_id))
        if target is not None:
            errors += _missing_inputs(
                session,
                target,
                changes.get("input", schedule.input),
                changes.get("dataset", schedule.dataset),
            )
    if errors:
        raise Unprocessable(errors)
    new_name = changes.get("name")
    if new_name is not None and new_name != schedule.name:
        _refuse_taken_name(session, new_name)
    timing = any(
        getattr(schedule, k) != changes[k] for k in ("cron", "timezone", "enabled") if k in changes
    )
    for name, value in changes.items():
        setattr(schedule, name, value)
    if timing:
        schedule.next_fire_at = _next_fire_at(schedule)
    schedule.updated_at = utcnow()
    session.add(schedule)
    _flush(session, schedule.name)
    _audit(session, actor, "schedule.updated", schedule, _described(changes))
    return schedule


def set_enabled(*, session: Session, schedule_id: str, enabled: bool, actor: Actor) -> Schedule:
    """Pause or resume. Resuming an enabled schedule (or pausing a paused one) changes
    nothing: the next fire time stays where it was."""
    schedule = get_schedule(session=session, schedule_id=schedule_id, lock=True)
    if schedule.enabled != enabled:
        schedule.enabled = enabled
        schedule.next_fire_at = _next_fire_at(schedule)
        schedule.updated_at = utcnow()
        session.add(schedule)
    action = "schedule.resumed" if enabled else "schedule.paused"
    _audit(session, actor, action, schedule, {})
    return schedule


def delete_schedule(*, session: Session, schedule_id: str, actor: Actor) -> None:
    """The schedule and its fire history go; the runs and batches it started stay."""
    schedule = get_schedule(session=session, schedule_id=schedule_id, lock=True)
    session.execute(delete(ScheduleFire).where(col(ScheduleFire.schedule_id) == schedule.id))
    session.delete(schedule)
    _audit(session, actor, "schedule.deleted", schedule, {})


def list_fires(
    *, session: Session, schedule_id: str, limit: int, offset: int
) -> tuple[list[FirePublic], int]:
    schedule = get_schedule(session=session, schedule_id=schedule_id)
    total = session.exec(
        select(func.count())
        .select_from(ScheduleFire)
        .where(col(ScheduleFire.schedule_id) == schedule.id)
    ).one()
    return _fires(session, schedule.id, limit=limit, offset=offset), int(total)


def _fires(session: Session, schedule_id: str, *, limit: int, offset: int) -> list[FirePublic]:
    fires = session.exec(
        select(ScheduleFire)
        .where(ScheduleFire.schedule_id == schedule_id)
        .order_by(col(ScheduleFire.fire_time).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [FirePublic.model_validate(f, from_attributes=True) for f in fires]


def public(session: Session, schedule: Schedule) -> SchedulePublic:
    return SchedulePublic(**_public_fields(session, schedule))


def detail(session: Session, schedule: Schedule) -> ScheduleDetail:
    upcoming: list[datetime] = []
    if schedule.next_fire_at is not None:
        cron = CronSchedule(schedule.cron, schedule.timezone)
        upcoming = [
            t.astimezone(cron.zone)
            for t in cron.upcoming(schedule.next_fire_at, NEXT_FIRE_TIMES_SHOWN)
        ]
    return ScheduleDetail(
        **_public_fields(session, schedule),
        dataset=schedule.dataset,
        next_fire_times=upcoming,
        recent_fires=_fires(session, schedule.id, limit=RECENT_FIRES_SHOWN, offset=0),
    )


def _public_fields(session: Session, schedule: Schedule) -> dict[str, Any]:
    workflow = session.get(Workflow, schedule.workflow_id)
    return {
        **schedule.model_dump(exclude={"dataset"}),
        "workflow": workflow.name if workflow is not None else schedule.workflow_id,
        "dataset_items": None if schedule.dataset is None else len(schedule.dataset),
    }


def _refuse_taken_name(session: Session, name: str) -> None:
    if session.exec(select(Schedule.id).where(Schedule.name == name)).first():
        raise Conflict(f"a schedule named '{name}' already exists")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the name first
        raise Conflict(f"a schedule named '{name}' already exists") from exc


def _settings(schedule: Schedule, workflow: Workflow) -> dict[str, Any]:
    return {
        "workflow": workflow.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "dataset_items": None if schedule.dataset is None else len(schedule.dataset),
        "enabled": schedule.enabled,
        "misfire_policy": schedule.misfire_policy,
    }


def _described(changes: dict[str, Any]) -> dict[str, Any]:
    """What changed, for the audit log: settings as they are, inputs and datasets only by
    size (they may hold customer data, which the audit log never does)."""
    described = {k: v for k, v in changes.items() if k not in ("input", "dataset")}
    if changes.get("input") is not None:
        described["input"] = "changed"
    if changes.get("dataset") is not None:
        described["dataset_items"] = len(changes["dataset"])
    return described


def _audit(
    session: Session, actor: Actor, action: str, schedule: Schedule, detail: dict[str, Any]
) -> None:
    audit.record(
        session,
        actor,
        action,
        target_type="schedule",
        target_id=schedule.id,
        target_name=schedule.name,
        detail=detail,
    )
