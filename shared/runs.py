"""Creating runs: a run and all its step rows are written in one transaction.

Used by the API (and later the scheduler); the caller enqueues the returned step ids
after the commit. This is the submission hot path: three statements and one bulk insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select
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


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run_id: str
    status: str
    ready_step_ids: list[str]


AGENT_SETTINGS = ("system_prompt", "temperature", "max_tokens", "timeout_seconds", "max_attempts")


WORKFLOW_WITH_CURRENT_VERSION = (
    select(WORKFLOWS.c.id, VERSIONS.c.id.label("version_id"), VERSIONS.c.definition)
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
    select(AGENTS, KEYS.c.provider)
    .select_from(AGENTS.join(KEYS, AGENTS.c.key_id == KEYS.c.id))
    .where(AGENTS.c.name.in_(bindparam("names", expanding=True)))
)
INSERT_RUN = insert(RUNS)
INSERT_STEPS = insert(STEPS)


def create_run(*, session: Session, workflow: str, input: dict[str, Any]) -> CreatedRun:
    """Create a run of the current version of `workflow` (an id or a name)."""
    found = session.execute(WORKFLOW_WITH_CURRENT_VERSION, {"ref": workflow}).first()
    if found is None:
        raise RunRejected(f"no workflow with id or name '{workflow}'", field="workflow")
    steps_spec: list[dict[str, Any]] = found.definition["steps"]
    names = sorted({step["agent"] for step in steps_spec})
    agents = {row.name: row for row in session.execute(AGENTS_BY_NAME, {"names": names})}
    for step in steps_spec:
        if step["agent"] not in agents:
            raise RunRejected(
                f"step '{step['id']}' uses agent '{step['agent']}', which no longer exists",
                field="workflow",
                step=step["id"],
            )

    now = utcnow()
    run_id = new_id()
    session.execute(
        INSERT_RUN,
        {
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
        },
    )
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
                "attempts": 0,
                "attempt_log": [],
            }
        )
    session.execute(INSERT_STEPS, rows)
    ready = [row["id"] for row in rows if row["status"] == StepStatus.queued]
    return CreatedRun(run_id=run_id, status=RunStatus.queued, ready_step_ids=ready)
