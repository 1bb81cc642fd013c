"""Creating runs: a run and all its step rows are written in one transaction.

Used by the API (and later the scheduler); the caller enqueues the returned step ids
after the commit. This is the submission hot path: three statements and one bulk insert.

Idempotency keys are global to the installation, not scoped per API token: every token
sees every run, so scoping would isolate nothing, and a client that rotates its token
between two retries must still get its first run back. The unique index on
`runs.idempotency_key` is what makes this hold when two submissions race; the request
hash turns a key reused for a different request into an error instead of a wrong run.
A key stays bound to its run for as long as the run exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from shared.models import (
    Agent,
    ProviderKey,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowVersion,
    new_id,
    utcnow,
)
from shared.queues import QueuedStep, resolve_queue
from shared.task_labels import step_label

__all__ = [
    "CreatedRun",
    "IdempotencyKeyReused",
    "RunRejected",
    "create_run",
    "request_hash",
]

RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]
WORKFLOWS = cast(Table, Workflow.__table__)  # type: ignore[attr-defined]
VERSIONS = cast(Table, WorkflowVersion.__table__)  # type: ignore[attr-defined]
AGENTS = cast(Table, Agent.__table__)  # type: ignore[attr-defined]
KEYS = cast(Table, ProviderKey.__table__)  # type: ignore[attr-defined]


class RunRejected(ValueError):
    """The run cannot start as asked; `field` names what to fix."""

    def __init__(self, message: str, *, field: str, step: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.step = step


class IdempotencyKeyReused(ValueError):
    """The Idempotency-Key already belongs to a run made from a different request."""

    def __init__(self, *, run_id: str) -> None:
        super().__init__(
            f"this Idempotency-Key was already used for a different request (run '{run_id}'); "
            "send a new key for a new request"
        )
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run_id: str
    status: str
    # The steps with no dependencies, each with its queue.
    ready_steps: list[QueuedStep]
    # True when an Idempotency-Key returned an existing run: nothing was created.
    replayed: bool = False


# Runs are created through an ORM session (tests, the API) or a plain connection.
Database = Session | Connection

AGENT_SETTINGS = ("system_prompt", "temperature", "max_tokens", "timeout_seconds", "max_attempts")


WORKFLOW_WITH_CURRENT_VERSION = (
    select(
        WORKFLOWS.c.id,
        WORKFLOWS.c.name,
        VERSIONS.c.id.label("version_id"),
        VERSIONS.c.definition,
    )
    .select_from(
        WORKFLOWS.join(
            VERSIONS,
            (VERSIONS.c.workflow_id == WORKFLOWS.c.id)
            & (VERSIONS.c.version == WORKFLOWS.c.current_version),
        )
    )
    .where(or_(WORKFLOWS.c.id == bindparam("ref"), WORKFLOWS.c.name == bindparam("ref")))
    .limit(1)
)
AGENTS_BY_NAME = (
    select(AGENTS, KEYS.c.provider, KEYS.c.queue.label("key_queue"))
    .select_from(AGENTS.join(KEYS, AGENTS.c.key_id == KEYS.c.id))
    .where(AGENTS.c.name.in_(bindparam("names", expanding=True)))
)
INSERT_RUN = insert(RUNS)
INSERT_STEPS = insert(STEPS)
RUN_FOR_KEY = select(RUNS.c.id, RUNS.c.status, RUNS.c.request_hash).where(
    RUNS.c.idempotency_key == bindparam("key")
)


def request_hash(*, workflow: str, input: dict[str, Any]) -> str:
    """SHA-256 of the request as sent (the workflow as named, not as resolved)."""
    canonical = json.dumps(
        {"workflow": workflow, "input": input}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _run_for_key(db: Database, idempotency_key: str, expected_hash: str) -> CreatedRun | None:
    row = db.execute(RUN_FOR_KEY, {"key": idempotency_key}).first()
    if row is None:
        return None
    if row.request_hash != expected_hash:
        raise IdempotencyKeyReused(run_id=row.id)
    return CreatedRun(run_id=row.id, status=row.status, ready_steps=[], replayed=True)


@dataclass(frozen=True, slots=True)
class _RunPlan:
    """A run's rows, resolved from the workflow's current version and its agents."""

    run_row: dict[str, Any]
    step_rows: list[dict[str, Any]]
    idempotency_key: str | None
    fingerprint: str | None
    # Set when the Idempotency-Key already names a run made from the same request.
    replay: CreatedRun | None = None
    workflow_name: str = ""


def _plan_run(
    db: Database, *, workflow: str, input: dict[str, Any], idempotency_key: str | None = None
) -> _RunPlan:
    """Resolve `workflow` (an id or a name) to its current version and build the rows.

    Raises `RunRejected` for a missing workflow or agent, and
    `IdempotencyKeyReused` for a key already used for a different request."""
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = request_hash(workflow=workflow, input=input)
        existing = _run_for_key(db, idempotency_key, fingerprint)
        if existing is not None:
            return _RunPlan({}, [], idempotency_key, fingerprint, replay=existing)
    found = db.execute(WORKFLOW_WITH_CURRENT_VERSION, {"ref": workflow}).first()
    if found is None:
        raise RunRejected(f"no workflow with id or name '{workflow}'", field="workflow")
    steps_spec: list[dict[str, Any]] = found.definition["steps"]
    names = sorted({step["agent"] for step in steps_spec})
    agents = {row.name: row for row in db.execute(AGENTS_BY_NAME, {"names": names})}
    for step in steps_spec:
        if step["agent"] not in agents:
            raise RunRejected(
                f"step '{step['id']}' uses agent '{step['agent']}', which no longer exists",
                field="workflow",
                step=step["id"],
            )

    now = utcnow()
    run_id = new_id()
    run_row = {
        "id": run_id,
        "workflow_id": found.id,
        "workflow_version_id": found.version_id,
        "status": RunStatus.queued,
        "input": input,
        "created_at": now,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost_nanos": 0,
        "cost_incomplete": False,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
    }
    rows: list[dict[str, Any]] = []
    for position, step in enumerate(steps_spec):
        agent = agents[step["agent"]]
        depends_on = list(step.get("depends_on") or [])
        rows.append(
            {
                "id": new_id(),
                "run_id": run_id,
                "step_key": step["id"],
                "position": position,
                "depends_on": depends_on,
                "status": StepStatus.pending if depends_on else StepStatus.queued,
                "queued_at": None if depends_on else now,
                "agent_id": agent.id,
                "agent_name": agent.name,
                "key_id": agent.key_id,
                "provider": agent.provider,
                "model": agent.model,
                "prompt_template": step["prompt"],
                # The agent's settings as they are now: later edits do not change this run.
                "agent_config": {name: getattr(agent, name) for name in AGENT_SETTINGS},
                # Resolved now, like the settings above: a later change moves later runs.
                "queue": resolve_queue(agent.queue, agent.key_queue),
                "attempts": 0,
                "attempt_log": [],
            }
        )
    return _RunPlan(run_row, rows, idempotency_key, fingerprint, workflow_name=found.name)


def _insert_run(db: Database, plan: _RunPlan) -> CreatedRun:
    """Write a planned run and its steps (inside the caller's write transaction).

    The ready steps come back for the caller to enqueue after the commit. The steps
    carry the agents' settings as planned, just as a run submitted a moment before an
    edit would; an Idempotency-Key that a concurrent submission took first returns that
    run."""
    if plan.replay is not None:
        return plan.replay
    if plan.idempotency_key is None or plan.fingerprint is None:
        db.execute(INSERT_RUN, plan.run_row)
    else:
        # A concurrent submission with the same key may have inserted since the lookup
        # in _plan_run: the unique index refuses this row (on PostgreSQL, once the other
        # transaction commits), the savepoint undoes it, and that run is the answer.
        try:
            with db.begin_nested():
                db.execute(INSERT_RUN, plan.run_row)
        except IntegrityError:
            existing = _run_for_key(db, plan.idempotency_key, plan.fingerprint)
            if existing is None:
                raise
            return existing
    db.execute(INSERT_STEPS, plan.step_rows)
    ready = [
        QueuedStep(
            row["id"],
            row["queue"],
            step_label(workflow=plan.workflow_name, step=row["step_key"], agent=row["agent_name"]),
        )
        for row in plan.step_rows
        if row["status"] == StepStatus.queued
    ]
    return CreatedRun(run_id=plan.run_row["id"], status=RunStatus.queued, ready_steps=ready)


def create_run(
    db: Database,
    *,
    workflow: str,
    input: dict[str, Any],
    idempotency_key: str | None = None,
) -> CreatedRun:
    """Create a run of the current version of `workflow` (an id or a name), in the
    caller's transaction; the caller enqueues `ready_steps` after its commit.

    With an `idempotency_key` already used for the same request, return that run
    (`replayed`) and create nothing; used for another request, raise
    `IdempotencyKeyReused`.
    """
    plan = _plan_run(db, workflow=workflow, input=input, idempotency_key=idempotency_key)
    return _insert_run(db, plan)
