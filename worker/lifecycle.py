"""A step's life in SQL: claim, succeed, fail, retry; successors; closing the run.

Every function here is one short transaction on a plain connection. This is the hot
path (two transactions per step), so the statements are built once, with bound
parameters: SQLAlchemy then reuses their compiled form and cache keys.

Claims are conditional updates with a lease, so a second delivery of the same message
is harmless. Completing a step first updates its run's row (the run totals), which
takes the run's row lock on PostgreSQL (SQLite serialises writers anyway); so when two
parallel steps finish at once, the second to commit sees the first one's success and
exactly one of them enqueues the join step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, true, update

from shared import budgets
from shared.models import (
    FINAL_STEP_STATUSES,
    ProviderKey,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    utcnow,
)
from shared.queues import DEFAULT_QUEUE, QueuedStep
from shared.task_labels import step_label

STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
KEYS = cast(Table, ProviderKey.__table__)  # type: ignore[attr-defined]
WORKFLOWS = cast(Table, Workflow.__table__)  # type: ignore[attr-defined]
LIVE_RUN_STATUSES = (RunStatus.queued, RunStatus.running)

CLAIM = (
    update(STEPS)
    .where(
        STEPS.c.id == bindparam("step_id"),
        or_(
            and_(
                STEPS.c.status == StepStatus.queued,
                or_(STEPS.c.not_before.is_(None), STEPS.c.not_before <= bindparam("now")),
            ),
            and_(
                STEPS.c.status == StepStatus.running,
                STEPS.c.lease_expires_at < bindparam("now"),
            ),
        ),
    )
    .values(
        status=StepStatus.running,
        claim_token=bindparam("token"),
        lease_expires_at=bindparam("lease_expires_at"),
        attempts=STEPS.c.attempts + 1,
        worker_host=bindparam("host"),
        started_at=bindparam("now"),
    )
    .returning(
        STEPS.c.run_id,
        STEPS.c.step_key,
        STEPS.c.agent_name,
        STEPS.c.attempts,
        STEPS.c.provider,
        STEPS.c.model,
        STEPS.c.key_id,
        STEPS.c.prompt_template,
        STEPS.c.agent_config,
        STEPS.c.depends_on,
        STEPS.c.attempt_log,
        # Unchanged by the claim: when the step became due (the queue-wait metric).
        STEPS.c.queued_at,
        STEPS.c.not_before,
        STEPS.c.queue,
    )
)
RUN_AND_KEY = (
    select(
        RUNS.c.input,
        RUNS.c.status,
        RUNS.c.workflow_id,
        RUNS.c.batch_id,
        KEYS.c.name,
        KEYS.c.base_url,
        KEYS.c.secret_ciphertext,
        KEYS.c.rpm,
        KEYS.c.tpm,
        WORKFLOWS.c.name.label("workflow_name"),
    )
    .select_from(RUNS.join(KEYS, true()).join(WORKFLOWS, WORKFLOWS.c.id == RUNS.c.workflow_id))
    .where(RUNS.c.id == bindparam("run_id"), KEYS.c.id == bindparam("key_id"))
)
MARK_RUN_RUNNING = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run_id"), RUNS.c.status == RunStatus.queued)
    .values(status=RunStatus.running, started_at=bindparam("now"))
)
RUN_STEPS = select(
    STEPS.c.id,
    STEPS.c.step_key,
    STEPS.c.agent_name,
    STEPS.c.status,
    STEPS.c.depends_on,
    STEPS.c.output,
    STEPS.c.queue,
).where(STEPS.c.run_id == bindparam("run_id"))
HELD = and_(
    STEPS.c.id == bindparam("step_id"),
    STEPS.c.claim_token == bindparam("token"),
    STEPS.c.status == StepStatus.running,
)
RELEASE_LEASE: dict[str, Any] = {"claim_token": None, "lease_expires_at": None}
SUCCEED = (
    update(STEPS)
    .where(HELD)
    .values(
        **RELEASE_LEASE,
        status=StepStatus.succeeded,
        error=None,
        error_kind=None,
        **{
            name: bindparam(f"v_{name}")
            for name in (
                "finished_at",
                "prompt",
                "output",
                "finish_reason",
                "request_id",
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "cost_nanos",
                "latency_ms",
                "attempt_log",
            )
        },
    )
)
ADD_TO_RUN_TOTALS = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run_id"))
    .values(
        input_tokens=RUNS.c.input_tokens + bindparam("add_input", type_=RUNS.c.input_tokens.type),
        output_tokens=RUNS.c.output_tokens
        + bindparam("add_output", type_=RUNS.c.output_tokens.type),
        cached_tokens=RUNS.c.cached_tokens
        + bindparam("add_cached", type_=RUNS.c.cached_tokens.type),
        cost_nanos=RUNS.c.cost_nanos + bindparam("add_cost", type_=RUNS.c.cost_nanos.type),
        cost_incomplete=or_(
            RUNS.c.cost_incomplete,
            bindparam("cost_unknown", type_=RUNS.c.cost_incomplete.type),
        ),
    )
    .returning(RUNS.c.status)
)
LOCK_RUN_STATUS = select(RUNS.c.status).where(RUNS.c.id == bindparam("run_id")).with_for_update()
QUEUE_READY = (
    update(STEPS)
    .where(STEPS.c.id.in_(bindparam("ready", expanding=True)), STEPS.c.status == StepStatus.pending)
    .values(status=StepStatus.queued, queued_at=bindparam("now"))
)

CLOSE_ENDED_RUN = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("run_id"), RUNS.c.finished_at.is_(None))
    .values(finished_at=bindparam("now"))
)
CLOSE_LIVE_RUN = CLOSE_ENDED_RUN.values(status=bindparam("new_status"))


@dataclass(frozen=True, slots=True)
class Advance:
    """What a step's outcome did to its run: successors that became due (to enqueue on
    their queues after the commit), and whether it closed the run (batches and webhooks
    then hear of it)."""

    ready: list[QueuedStep]
    closed: bool = False
    # Budgets whose soft limit this step's cost crossed (announced after the commit).
    soft_limits: tuple[budgets.SoftLimitReached, ...] = ()
    # The status this outcome gave the step (succeeded, cancelled, failed); empty when
    # nothing was recorded (the lease was lost) or the step only went back to the queue.
    # Not compared: an Advance equals NOTHING when it moved the run no further.
    step_status: str = field(default="", compare=False)


NOTHING = Advance([])


@dataclass(frozen=True, slots=True)
class Claim:
    """Everything a worker needs to call the provider, read in the claim transaction."""

    step_id: str
    run_id: str
    step_key: str
    token: str
    attempt: int
    provider: str
    model: str
    key_id: str
    key_name: str
    key_rpm: int | None
    key_tpm: int | None
    base_url: str
    secret_ciphertext: str | None
    prompt_template: str
    agent_config: dict[str, Any]
    run_input: dict[str, Any]
    upstream_outputs: dict[str, str]
    attempt_log: list[dict[str, Any]]
    workflow_id: str = ""
    batch_id: str | None = None
    # When the step became due (queued, or its retry's not_before), if known.
    due_at: datetime | None = None
    workflow_name: str = ""
    agent_name: str = ""
    queue: str = DEFAULT_QUEUE

    @property
    def queued(self) -> QueuedStep:
        """This step as its messages are sent: its queue and what Flower calls it."""
        label = step_label(workflow=self.workflow_name, step=self.step_key, agent=self.agent_name)
        return QueuedStep(self.step_id, self.queue, label)


@dataclass(frozen=True, slots=True)
class StepResult:
    output: str
    prompt: str
    finish_reason: str | None
    request_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int
    cache_write_tokens: int
    cost_nanos: int | None
    latency_ms: int


def claim_step(
    db: Connection, step_id: str, *, host: str, default_timeout: float, lease_margin: float
) -> Claim | None:
    """Take the step if it is due and nobody holds a live lease on it; else None.

    The lease lasts the step's call timeout plus `lease_margin`: past that, the worker
    is taken for dead and the reconciler hands the step to another one."""
    now = utcnow()
    lease_seconds = default_timeout + lease_margin
    token = uuid.uuid4().hex
    step = db.execute(
        CLAIM,
        {
            "step_id": step_id,
            "now": now,
            "token": token,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "host": host,
        },
    ).first()
    if step is None:
        return None
    timeout = step.agent_config.get("timeout_seconds") or default_timeout
    if timeout != default_timeout:
        db.execute(
            update(STEPS)
            .where(STEPS.c.id == step_id)
            .values(lease_expires_at=now + timedelta(seconds=timeout + lease_margin))
        )
    run = db.execute(RUN_AND_KEY, {"run_id": step.run_id, "key_id": step.key_id}).one()
    if run.status == RunStatus.queued:
        db.execute(MARK_RUN_RUNNING, {"run_id": step.run_id, "now": now})
    upstream = _upstream_outputs(db, step.run_id, step.depends_on) if step.depends_on else {}
    return Claim(
        step_id=step_id,
        run_id=step.run_id,
        step_key=step.step_key,
        token=token,
        attempt=step.attempts,
        provider=step.provider,
        model=step.model,
        key_id=step.key_id,
        key_name=run.name,
        key_rpm=run.rpm,
        key_tpm=run.tpm,
        base_url=run.base_url,
        secret_ciphertext=run.secret_ciphertext,
        prompt_template=step.prompt_template,
        agent_config=dict(step.agent_config),
        run_input=dict(run.input),
        upstream_outputs=upstream,
        attempt_log=list(step.attempt_log),
        workflow_id=run.workflow_id,
        batch_id=run.batch_id,
        workflow_name=run.workflow_name,
        agent_name=step.agent_name,
        due_at=_latest(step.queued_at, step.not_before),
        queue=step.queue,
    )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def _upstream_outputs(db: Connection, run_id: str, depends_on: list[str]) -> dict[str, str]:
    """The outputs of every step upstream of a step: a template may read any ancestor."""
    graph = {row.step_key: row for row in db.execute(RUN_STEPS, {"run_id": run_id})}
    seen: set[str] = set()
    todo = list(depends_on)
    while todo:
        name = todo.pop()
        if name not in seen and name in graph:
            seen.add(name)
            todo.extend(graph[name].depends_on)
    return {name: graph[name].output or "" for name in seen}


def _held(claim: Claim) -> dict[str, Any]:
    return {"step_id": claim.step_id, "token": claim.token}


def _finish_held_step(db: Connection, claim: Claim, **values: Any) -> bool:
    """Write an outcome only if this worker still holds the lease."""
    result = db.execute(update(STEPS).where(HELD).values(**RELEASE_LEASE, **values), _held(claim))
    return bool(result.rowcount == 1)


def complete_step(
    db: Connection, claim: Claim, result: StepResult, attempt_entry: dict[str, Any]
) -> Advance:
    """Record a success; returns the successor steps that became due. The step's cost is
    added to its budgets last: on PostgreSQL their rows then stay locked only until the
    commit."""
    now = utcnow()
    values = {
        "v_finished_at": now,
        "v_prompt": result.prompt,
        "v_output": result.output,
        "v_finish_reason": result.finish_reason,
        "v_request_id": result.request_id,
        "v_input_tokens": result.input_tokens,
        "v_output_tokens": result.output_tokens,
        "v_cached_tokens": result.cached_tokens,
        "v_cache_write_tokens": result.cache_write_tokens,
        "v_cost_nanos": result.cost_nanos,
        "v_latency_ms": result.latency_ms,
        "v_attempt_log": [*claim.attempt_log, attempt_entry],
    }
    if db.execute(SUCCEED, {**_held(claim), **values}).rowcount != 1:
        return NOTHING
    # Adding to the totals takes the run's row lock before the siblings are read.
    run_status = db.execute(
        ADD_TO_RUN_TOTALS,
        {
            "run_id": claim.run_id,
            "add_input": result.input_tokens or 0,
            "add_output": result.output_tokens or 0,
            "add_cached": result.cached_tokens,
            "add_cost": result.cost_nanos or 0,
            "cost_unknown": result.cost_nanos is None,
        },
    ).scalar_one()
    step_status = StepStatus.succeeded
    if run_status == RunStatus.cancelled:
        # The call was made and paid: keep its usage and cost, discard its output.
        db.execute(
            update(STEPS)
            .where(STEPS.c.id == claim.step_id)
            .values(status=StepStatus.cancelled, output=None)
        )
        step_status = StepStatus.cancelled
    advance = replace(
        advance_run(db, claim.run_id, run_status, now, workflow_name=claim.workflow_name),
        step_status=step_status,
    )
    reached = budgets.record_spend(
        db,
        key_id=claim.key_id,
        workflow_id=claim.workflow_id,
        cost_nanos=result.cost_nanos,
        now=now,
    )
    return replace(advance, soft_limits=reached) if reached else advance


def fail_step(
    db: Connection,
    claim: Claim,
    *,
    error: str,
    error_kind: str,
    attempt_entry: dict[str, Any],
    prompt: str | None = None,
    run_status: RunStatus = RunStatus.failed,
) -> Advance:
    """Record a permanent failure: the run ends with `run_status` (failed, or
    budget_exceeded when a budget stopped the step), naming the step; waiting steps are
    skipped."""
    now = utcnow()
    if not _finish_held_step(
        db,
        claim,
        status=StepStatus.failed,
        finished_at=now,
        prompt=prompt,
        error=error,
        error_kind=error_kind,
        attempt_log=[*claim.attempt_log, attempt_entry],
    ):
        return NOTHING
    status = lock_run_status(db, claim.run_id)
    if status in LIVE_RUN_STATUSES:
        db.execute(
            update(RUNS)
            .where(RUNS.c.id == claim.run_id)
            .values(
                status=run_status,
                failed_step=claim.step_key,
                error=f"step '{claim.step_key}' failed: {error}",
            )
        )
        status = run_status
    skip_waiting_steps(db, claim.run_id, now)
    return replace(advance_run(db, claim.run_id, status, now), step_status=StepStatus.failed)


def lock_run_status(db: Connection, run_id: str) -> str:
    """The run's status, with its row locked until the transaction ends."""
    status = db.execute(LOCK_RUN_STATUS, {"run_id": run_id}).scalar_one_or_none()
    if status is None:
        raise LookupError(run_id)
    return str(status)


class RunAlreadyFinished(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the run already ended ({status})")
        self.status = status


def cancel_run(db: Connection, run_id: str) -> Advance:
    """Cancel a run: waiting steps are skipped and never call a provider; a step that is
    running finishes its call, but its output is discarded."""
    status = lock_run_status(db, run_id)
    if status not in LIVE_RUN_STATUSES:
        raise RunAlreadyFinished(status)
    now = utcnow()
    db.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(status=RunStatus.cancelled, error="cancelled by request")
    )
    skip_waiting_steps(db, run_id, now)
    return advance_run(db, run_id, RunStatus.cancelled, now)


def skip_waiting_steps(db: Connection, run_id: str, now: datetime) -> None:
    db.execute(
        update(STEPS)
        .where(
            STEPS.c.run_id == run_id,
            STEPS.c.status.in_([StepStatus.pending, StepStatus.queued]),
        )
        .values(status=StepStatus.skipped, finished_at=now)
    )


def retry_step_later(
    db: Connection,
    claim: Claim,
    *,
    delay_seconds: float,
    attempt_entry: dict[str, Any] | None,
    count_attempt: bool = True,
) -> Advance:
    """Hand the step back as queued, due after the delay; `ready` holds the step when the
    caller should enqueue it (with that countdown). A wait that is not an attempt (a
    rate-limit slot) does not count one. A step of a run that ended meanwhile
    (cancelled, failed) is skipped instead."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": StepStatus.queued,
        "queued_at": now,
        "not_before": now + timedelta(seconds=delay_seconds),
    }
    if attempt_entry is not None:
        values["attempt_log"] = [*claim.attempt_log, attempt_entry]
    if not count_attempt:
        values["attempts"] = STEPS.c.attempts - 1
    if not _finish_held_step(db, claim, **values):
        return NOTHING
    status = lock_run_status(db, claim.run_id)
    if status in LIVE_RUN_STATUSES:
        return Advance([claim.queued])
    skip_waiting_steps(db, claim.run_id, now)
    return advance_run(db, claim.run_id, status, now)


def advance_run(
    db: Connection, run_id: str, run_status: str, now: datetime, *, workflow_name: str = ""
) -> Advance:
    """Queue the steps whose dependencies have all succeeded; close a run whose every
    step is final. The caller holds the run's row lock. `workflow_name` goes into the
    ready steps' labels; only a step's success makes successors ready, and its caller
    knows the name from the claim."""
    steps = db.execute(RUN_STEPS, {"run_id": run_id}).all()
    succeeded = {s.step_key for s in steps if s.status == StepStatus.succeeded}
    ready: list[QueuedStep] = []
    if run_status in LIVE_RUN_STATUSES:
        ready = [
            QueuedStep(
                s.id,
                s.queue,
                step_label(workflow=workflow_name, step=s.step_key, agent=s.agent_name),
            )
            for s in steps
            if s.status == StepStatus.pending and all(d in succeeded for d in s.depends_on)
        ]
    if ready:
        db.execute(QUEUE_READY, {"ready": [s.step_id for s in ready], "now": now})
        return Advance(ready)
    if all(s.status in FINAL_STEP_STATUSES for s in steps):
        params: dict[str, Any] = {"run_id": run_id, "now": now}
        if run_status in LIVE_RUN_STATUSES:
            failed = any(s.status == StepStatus.failed for s in steps)
            params["new_status"] = RunStatus.failed if failed else RunStatus.succeeded
            closed = db.execute(CLOSE_LIVE_RUN, params)
        else:  # cancelled, failed or over budget already: only the end time is new
            closed = db.execute(CLOSE_ENDED_RUN, params)
        return Advance([], closed=closed.rowcount == 1)
    return NOTHING
