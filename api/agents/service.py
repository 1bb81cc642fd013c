"""Agents: a name, a key, a model and the settings each call is made with."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from api.agents.schemas import AgentCreate, AgentPublic, AgentUpdate
from api.errors import Conflict, NotFound, Unprocessable, field_error
from shared import audit
from shared.audit import Actor
from shared.models import Agent, ProviderKey, Workflow, WorkflowVersion, utcnow


def _require_key(session: Session, key_id: str) -> ProviderKey:
    key = session.get(ProviderKey, key_id)
    if key is None:
        raise Unprocessable([field_error("key_id", f"no key with id '{key_id}'")])
    return key


def create_agent(*, session: Session, body: AgentCreate, actor: Actor) -> Agent:
    _require_key(session, body.key_id)
    if session.exec(select(Agent.id).where(Agent.name == body.name)).first():
        raise Conflict(f"an agent named '{body.name}' already exists")
    agent = Agent(**body.model_dump())
    session.add(agent)
    session.flush()
    _audit(session, actor, "agent.created", agent, body.model_dump())
    return agent


def _audit(
    session: Session, actor: Actor, action: str, agent: Agent, detail: dict[str, Any]
) -> None:
    # The system prompt can be long and is the user's content: its length is enough here.
    if detail.get("system_prompt") is not None:
        detail = {**detail, "system_prompt": f"({len(detail['system_prompt'])} characters)"}
    audit.record(
        session,
        actor,
        action,
        target_type="agent",
        target_id=agent.id,
        target_name=agent.name,
        detail=detail,
    )


def get_agent(*, session: Session, agent_id: str) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        agent = session.exec(select(Agent).where(Agent.name == agent_id)).first()
    if agent is None:
        raise NotFound(f"no agent with id or name '{agent_id}'")
    return agent


def update_agent(*, session: Session, agent_id: str, body: AgentUpdate, actor: Actor) -> Agent:
    agent = get_agent(session=session, agent_id=agent_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("key_id") is not None:
        _require_key(session, changes["key_id"])
    for field in ("key_id", "model", "max_attempts"):
        if field in changes and changes[field] is None:
            raise Unprocessable([field_error(field, f"{field} cannot be null")])
    for field, value in changes.items():
        setattr(agent, field, value)
    agent.updated_at = utcnow()
    session.add(agent)
    session.flush()
    _audit(session, actor, "agent.updated", agent, changes)
    return agent


def delete_agent(*, session: Session, agent_id: str, actor: Actor) -> None:
    agent = get_agent(session=session, agent_id=agent_id)
    users = [
        workflow.name
        for workflow, version in session.exec(
            select(Workflow, WorkflowVersion).where(
                WorkflowVersion.workflow_id == Workflow.id,
                WorkflowVersion.version == Workflow.current_version,
            )
        ).all()
        if any(step["agent"] == agent.name for step in version.definition["steps"])
    ]
    if users:
        raise Conflict(f"agent '{agent.name}' is used by workflow(s) {', '.join(sorted(users))}")
    session.delete(agent)
    _audit(session, actor, "agent.deleted", agent, {})


def list_agents(*, session: Session) -> list[tuple[Agent, ProviderKey]]:
    return list(
        session.exec(
            select(Agent, ProviderKey).where(Agent.key_id == ProviderKey.id).order_by(Agent.name)
        ).all()
    )


def to_public(agent: Agent, key: ProviderKey) -> AgentPublic:
    return AgentPublic.model_validate({**agent.model_dump(), "provider": key.provider})


def public(session: Session, agent: Agent) -> AgentPublic:
    return to_public(agent, session.get_one(ProviderKey, agent.key_id))
