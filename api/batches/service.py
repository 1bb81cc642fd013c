"""Submitting, estimating, reading, retrying and cancelling batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select, update
from sqlmodel import Session, col

from api.batches.intake import BatchRequest
from api.batches.schemas import (
    BatchCounts,
    BatchEstimatePublic,
    BatchPublic,
    SkippedRow,
    StepEstimatePublic,
)
from api.errors import Conflict, NotFound, Unprocessable, field_error
from api.workflows.service import current_version, find_workflow
from shared import audit, webhooks
from shared.audit import Actor
from shared.automation_models import Batch, BatchStatus
from shared.batch_progress import BatchProgress, batch_progress, eta_seconds
from shared.batches import (
    BatchNotRetryable,
    create_batch,
    lock_batch,
    release_waiting,
    retry_failed,
)
from shared.datasets import Dataset, RowProblem, prompt_input_fields, require_fields
from shared.db import read_session, transaction
from shared.estimates import estimate_batch
from shared.models import Run, Workflow, utcnow
from shared.pricing import nanos_to_usd
from worker import lifecycle
from worker.run_events import announce_closed

# A 422 lists this many bad rows, then says how many more there are.
MAX_LISTED_PROBLEMS = 100

BATCHES = cast(Table, Batch.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Prepared:
    workflow: Workflow
    steps: list[dict[str, Any]]
    dataset: Dataset


def _problem_error(request: BatchRequest, problem: RowProblem) -> dict[str, Any]:
    loc: list[Any] = (
        ["dataset", problem.line - 1] if request.source == "dataset" else [request.source]
    )
    return field_error(loc, problem.message, line=problem.line)


def _prepare(request: BatchRequest) -> _Prepared:
    """The workflow and the rows that can run; 422 listing every bad row by its line
    unless `skip_invalid`."""
    with read_session() as session:
        workflow = find_workflow(session, request.options.workflow)
        if workflow is None:
            message = f"no workflow with id or name '{request.options.workflow}'"
            raise Unprocessable([field_error("workflow", message)])
        steps: list[dict[str, Any]] = current_version(session, workflow).definition["steps"]
    dataset = require_fields(request.dataset, prompt_input_fields(s["prompt"] for s in steps))
    if dataset.problems and not request.options.skip_invalid:
        listed = dataset.problems[:MAX_LISTED_PROBLEMS]
        errors = [_problem_error(request, p) for p in listed]
        if len(dataset.problems) > len(listed):
            more = len(dataset.problems) - len(listed)
            errors.append(field_error(request.source, f"... and {more} more bad rows"))
        errors.append(
            field_error(
                "skip_invalid",
                f"{len(dataset.problems)} of {len(dataset.rows) + len(dataset.problems)} rows "
                "cannot run: fix them, or send skip_invalid=true to run the others",
            )
        )
        raise Unprocessable(errors)
    if not dataset.rows:
        raise Unprocessable([field_error(request.source, "no row of the dataset can run")])
    return _Prepared(workflow, steps, dataset)


def _skipped(dataset: Dataset) -> list[SkippedRow]:
    return [SkippedRow(line=p.line, msg=p.message) for p in dataset.problems]


def estimate(request: BatchRequest) -> BatchEstimatePublic:
    """What the batch would cost; stores nothing."""
    prepared = _prepare(request)
    with read_session() as session:
        found = estimate_batch(
            session,
            workflow_id=prepared.workflow.id,
            steps=prepared.steps,
            inputs=[row.input for row in prepared.dataset.rows],
        )
    return BatchEstimatePublic(
        workflow=prepared.workflow.name,
        items=found.items,
        low_usd=nanos_to_usd(found.low_nanos) or 0.0,
        high_usd=nanos_to_usd(found.high_nanos) or 0.0,
        expected_usd=nanos_to_usd(found.expected_nanos),
        basis=found.basis,
        basis_detail=found.basis_detail,
        complete=not found.unpriced_steps,
        unpriced_steps=found.unpriced_steps,
        steps=[
            StepEstimatePublic(
                step=s.step,
                agent=s.agent,
                provider=s.provider,
                model=s.model,
                basis=s.basis,
                samples=s.samples,
                input_tokens_per_item=s.input_tokens,
                output_tokens_per_item=s.output_tokens,
                low_usd=nanos_to_usd(s.low_nanos),
                high_usd=nanos_to_usd(s.high_nanos),
                expected_usd=nanos_to_usd(s.expected_nanos),
            )
            for s in found.steps
        ],
        skipped=_skipped(prepared.dataset),
        skipped_count=len(prepared.dataset.problems),
    )


def submit(request: BatchRequest, *, actor: Actor) -> tuple[str, list[SkippedRow]]:
    """Store the batch and its items in one transaction, then start the first runs."""
    prepared = _prepare(request)
    rows = prepared.dataset.rows
    with transaction() as db:
        batch_id = create_batch(
            db,
            workflow=prepared.workflow.id,
            items=[row.input for row in rows],
            positions=[row.line for row in rows],
            max_in_flight=request.options.max_in_flight,
            name=request.options.name or request.filename,
        )
        audit.record(
            db,
            actor,
            "batch.created",
            target_type="batch",
            target_id=batch_id,
            target_name=prepared.workflow.name,
            detail={
                "items": len(rows),
                "skipped": len(prepared.dataset.problems),
                "max_in_flight": request.options.max_in_flight,
            },
        )
    release_waiting(batch_id)
    return batch_id, _skipped(prepared.dataset)


def _public(batch: Batch, workflow_name: str, progress: BatchProgress) -> BatchPublic:
    return BatchPublic(
        id=batch.id,
        name=batch.name,
        workflow=workflow_name,
        workflow_id=batch.workflow_id,
        status=batch.status,
        max_in_flight=batch.max_in_flight,
        total=batch.total,
        progress=BatchCounts(
            waiting=progress.waiting,
            queued=progress.queued,
            running=progress.running,
            succeeded=progress.succeeded,
            failed=progress.failed,
            cancelled=progress.cancelled,
        ),
        done=progress.closed,
        input_tokens=progress.input_tokens,
        output_tokens=progress.output_tokens,
        cached_tokens=progress.cached_tokens,
        cost_usd=nanos_to_usd(progress.cost_nanos) or 0.0,
        cost_incomplete=progress.cost_incomplete,
        eta_seconds=eta_seconds(
            status=batch.status,
            total=batch.total,
            closed=progress.closed,
            started_at=batch.started_at,
        ),
        schedule_id=batch.schedule_id,
        created_at=batch.created_at,
        started_at=batch.started_at,
        finished_at=batch.finished_at,
    )


def get_batch(*, session: Session, batch_id: str) -> BatchPublic:
    row = session.exec(
        select(Batch, Workflow.name)  # type: ignore[call-overload]
        .where(Batch.id == batch_id)
        .where(Workflow.id == Batch.workflow_id)
    ).first()
    if row is None:
        raise NotFound(f"no batch with id '{batch_id}'")
    batch, workflow_name = row
    return _public(batch, workflow_name, batch_progress(session, [batch.id])[batch.id])


def list_batches(
    *, session: Session, status: str | None, workflow: str | None, limit: int, offset: int
) -> tuple[list[BatchPublic], int]:
    query = select(Batch, Workflow.name).where(Workflow.id == Batch.workflow_id)  # type: ignore[call-overload]
    count_query = select(func.count()).select_from(Batch)
    if status:
        query = query.where(Batch.status == status)
        count_query = count_query.where(Batch.status == status)  # type: ignore[arg-type]
    if workflow:
        found = find_workflow(session, workflow)
        if found is None:
            return [], 0
        query = query.where(Batch.workflow_id == found.id)
        count_query = count_query.where(Batch.workflow_id == found.id)  # type: ignore[arg-type]
    rows = session.exec(
        query.order_by(col(Batch.created_at).desc(), col(Batch.id)).offset(offset).limit(limit)
    ).all()
    progress = batch_progress(session, [batch.id for batch, _ in rows])
    total = session.execute(count_query).scalar_one()
    return [_public(b, name, progress[b.id]) for b, name in rows], int(total)


def cancel_batch(batch_id: str, *, actor: Actor) -> None:
    """Waiting items never start; runs in flight are cancelled (a step already calling
    its provider finishes, paid, and its output is discarded). 409 once it has ended."""
    with transaction() as db:
        try:
            batch = lock_batch(db, batch_id)
        except LookupError:
            raise NotFound(f"no batch with id '{batch_id}'") from None
        if batch.status != BatchStatus.running:
            raise Conflict(
                f"batch '{batch_id}' cannot be cancelled: it already ended ({batch.status})"
            )
        db.execute(
            update(BATCHES)
            .where(BATCHES.c.id == batch_id)
            .values(status=BatchStatus.cancelled, finished_at=utcnow())
        )
        closed = _cancel_live_runs(db, batch_id)
        audit.record(db, actor, "batch.cancelled", target_type="batch", target_id=batch_id)
    for run_id in closed:
        announce_closed(run_id)
    webhooks.on_batch_finished(batch_id)


def _cancel_live_runs(db: Connection, batch_id: str) -> list[str]:
    """Cancel the batch's queued and running runs; returns those that closed at once."""
    live = db.execute(
        select(RUNS.c.id).where(
            RUNS.c.batch_id == batch_id, RUNS.c.status.in_(lifecycle.LIVE_RUN_STATUSES)
        )
    ).scalars()
    closed = []
    for run_id in list(live):
        try:
            if lifecycle.cancel_run(db, run_id).closed:
                closed.append(run_id)
        except lifecycle.RunAlreadyFinished:
            continue  # it ended between the query and its row lock
    return closed


def retry_batch(batch_id: str, *, actor: Actor) -> int:
    """New runs for the items whose run did not succeed; returns how many."""
    with transaction() as db:
        try:
            retried = retry_failed(db, batch_id)
        except LookupError:
            raise NotFound(f"no batch with id '{batch_id}'") from None
        except BatchNotRetryable:
            raise Conflict(f"batch '{batch_id}' was cancelled; it cannot run again") from None
        if retried:
            audit.record(
                db,
                actor,
                "batch.retried",
                target_type="batch",
                target_id=batch_id,
                detail={"items": retried},
            )
    if retried:
        release_waiting(batch_id)
    return retried
