"""Creating runs: a run and all its step rows are written in one transaction.

Used by the API (and later the scheduler); the caller enqueues the returned step ids
after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from shared.models import (
    Agent,
    ProviderKey,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowVersion,
    utcnow,
)


class RunRejected(ValueError):
    """The run cannot start as asked; `field` names what to fix."""

    def __init__(self, message: str, *, field: str, step: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.step = step


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run: Run
    ready_step_ids: list[str]


def agent_snapshot(agent: Agent) -> dict[str, Any]:
    """The agent settings a step runs with, frozen at submission."""
    return {
        "system_prompt": agent.system_prompt,
        "temperature": agent.temperature,
        "max_tokens": agent.max_tokens,
        "timeout_seconds": agent.timeout_seconds,
        "max_attempts": agent.max_attempts,
    }


def create_run(*, session: Session, workflow: Workflow, input: dict[str, Any]) -> CreatedRun:
    version = session.exec(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow.id,
            WorkflowVersion.version == workflow.current_version,
        )
    ).one()
    steps_spec: list[dict[str, Any]] = version.definition["steps"]
    agent_names = {step["agent"] for step in steps_spec}
    rows = session.exec(
        select(Agent, ProviderKey)
        .join(ProviderKey, Agent.key_id == ProviderKey.id)  # type: ignore[arg-type]
        .where(Agent.name.in_(agent_names))  # type: ignore[attr-defined]
    ).all()
    agents = {agent.name: (agent, key) for agent, key in rows}
    for step in steps_spec:
        if step["agent"] not in agents:
            raise RunRejected(
                f"step '{step['id']}' uses agent '{step['agent']}', which no longer exists",
                field="workflow",
                step=step["id"],
            )

    now = utcnow()
    run = Run(
        workflow_id=workflow.id,
        workflow_version_id=version.id,
        status=RunStatus.queued,
        input=input,
        created_at=now,
    )
    session.add(run)
    ready: list[str] = []
    for position, step in enumerate(steps_spec):
        agent, key = agents[step["agent"]]
        depends_on = list(step.get("depends_on") or [])
        row = StepRun(
            run_id=run.id,
            step_key=step["id"],
            position=position,
            depends_on=depends_on,
            status=StepStatus.pending if depends_on else StepStatus.queued,
            queued_at=None if depends_on else now,
            agent_id=agent.id,
            agent_name=agent.name,
            key_id=key.id,
            provider=key.provider,
            model=agent.model,
            prompt_template=step["prompt"],
            agent_config=agent_snapshot(agent),
        )
        session.add(row)
        if not depends_on:
            ready.append(row.id)
    session.flush()
    return CreatedRun(run=run, ready_step_ids=ready)
