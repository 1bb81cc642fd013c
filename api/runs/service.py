"""Submitting and reading runs."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.errors import Conflict, NotFound, Unprocessable, field_error
from api.runs.schemas import (
    IDEMPOTENCY_HEADER,
    RunCreate,
    RunPublic,
    RunSummary,
    StepPublic,
)
from api.workers.service import liveness, waiting_for
from api.workflows.service import find_workflow
from shared import audit
from shared.audit import Actor
from shared.db import transaction
from shared.models import Run, StepRun, StepStatus, Workflow, WorkflowVersion
from shared.pricing import nanos_to_usd
from shared.runs import CreatedRun, IdempotencyKeyReused, RunRejected, create_run
from worker import lifecycle
from worker.dispatch import enqueue_steps
from worker.run_events import announce_closed


def submit_run(body: RunCreate, *, actor: Actor, idempotency_key: str | None = None) -> CreatedRun:
    """Insert the run and its steps in one transaction, then enqueue the ready steps.
    A replayed Idempotency-Key returns the existing run and enqueues nothing."""
    try:
        with transaction() as db:
            created = create_run(
                db, workflow=body.workflow, input=body.input, idempotency_key=idempotency_key
            )
            if not created.replayed:
                audit.record(
                    db,
                    actor,
                    "run.started",
                    target_type="run",
                    target_id=created.run_id,
                    target_name=body.workflow,
                )
    except RunRejected as exc:
        raise Unprocessable([field_error(exc.field, str(exc), step=exc.step)]) from exc
    except IdempotencyKeyReused as exc:
        error = {"loc": ["header", IDEMPOTENCY_HEADER], "msg": str(exc), "type": "value_error"}
        raise Unprocessable([error]) from exc
    enqueue_steps(created.ready_steps)
    return created


def cancel_run(run_id: str, *, actor: Actor) -> None:
    """Cancel a queued or running run; a finished one is a conflict."""
    try:
        with transaction() as db:
            advance = lifecycle.cancel_run(db, run_id)
            audit.record(db, actor, "run.cancelled", target_type="run", target_id=run_id)
    except LookupError:
        raise NotFound(f"no run with id '{run_id}'") from None
    except lifecycle.RunAlreadyFinished as exc:
        raise Conflict(
            f"run '{run_id}' cannot be cancelled: it already ended ({exc.status})"
        ) from None
    if advance.closed:
        announce_closed(run_id)


def _summary(run: Run, workflow: Workflow, version: int) -> dict[str, object]:
    return {
        "id": run.id,
        "status": run.status,
        "workflow": workflow.name,
        "workflow_id": workflow.id,
        "workflow_version": version,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cached_tokens": run.cached_tokens,
        "cost_usd": nanos_to_usd(run.cost_nanos),
        "cost_incomplete": run.cost_incomplete,
        "failed_step": run.failed_step,
        "error": run.error,
    }


def _step_public(step: StepRun, live_queues: set[str] | None) -> StepPublic:
    return StepPublic(
        id=step.step_key,
        step_run_id=step.id,
        status=step.status,
        agent=step.agent_name,
        provider=step.provider,
        model=step.model,
        depends_on=step.depends_on,
        output=step.output,
        error=step.error,
        input_tokens=step.input_tokens,
        output_tokens=step.output_tokens,
        cached_tokens=step.cached_tokens,
        cost_usd=nanos_to_usd(step.cost_nanos),
        latency_ms=step.latency_ms,
        attempts=step.attempts,
        attempt_log=step.attempt_log,
        worker_host=step.worker_host,
        started_at=step.started_at,
        finished_at=step.finished_at,
        queue=step.queue,
        waiting_for=(
            waiting_for(step.queue, live_queues) if step.status == StepStatus.queued else None
        ),
    )


def get_run(*, session: Session, run_id: str) -> RunPublic:
    row = session.exec(
        select(Run, Workflow, WorkflowVersion.version)
        .where(Run.id == run_id)
        .where(Workflow.id == Run.workflow_id)
        .where(WorkflowVersion.id == Run.workflow_version_id)
    ).first()
    if row is None:
        raise NotFound(f"no run with id '{run_id}'")
    run, workflow, version = row
    steps = session.exec(
        select(StepRun).where(StepRun.run_id == run.id).order_by(col(StepRun.position))
    ).all()
    # Redis is asked (through a short cache) only while some step waits in a queue.
    waiting = any(s.status == StepStatus.queued for s in steps)
    live_queues = liveness.queues() if waiting else None
    return RunPublic(
        **_summary(run, workflow, version),  # type: ignore[arg-type]
        input=run.input,
        steps=[_step_public(s, live_queues) for s in steps],
    )


def list_runs(
    *, session: Session, status: str | None, workflow: str | None, limit: int, offset: int
) -> tuple[list[RunSummary], int]:
    query = (
        select(Run, Workflow, WorkflowVersion.version)
        .where(Workflow.id == Run.workflow_id)
        .where(WorkflowVersion.id == Run.workflow_version_id)
    )
    count_query = select(func.count()).select_from(Run)
    if status:
        query = query.where(Run.status == status)
        count_query = count_query.where(Run.status == status)
    if workflow:
        found = find_workflow(session, workflow)
        if found is None:
            return [], 0
        query = query.where(Run.workflow_id == found.id)
        count_query = count_query.where(Run.workflow_id == found.id)
    rows = session.exec(
        query.order_by(col(Run.created_at).desc(), col(Run.id)).offset(offset).limit(limit)
    ).all()
    total = session.exec(count_query).one()
    return [RunSummary(**_summary(r, w, v)) for r, w, v in rows], int(total)  # type: ignore[arg-type]
