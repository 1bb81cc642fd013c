"""Rows for unit tests, made in one place."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from shared.models import Agent, ProviderKey, Workflow, WorkflowVersion


def make_key(
    session: Session,
    *,
    provider: str = "openai",
    name: str = "k",
    base_url: str = "http://127.0.0.1:1/v1",
) -> ProviderKey:
    key = ProviderKey(provider=provider, name=name, base_url=base_url)
    session.add(key)
    session.flush()
    return key


def make_agent(
    session: Session,
    key: ProviderKey,
    *,
    name: str = "a",
    model: str = "gpt-4o-mini",
    **fields: Any,
) -> Agent:
    agent = Agent(name=name, key_id=key.id, model=model, **fields)
    session.add(agent)
    session.flush()
    return agent


def make_workflow(session: Session, *, name: str, steps: list[dict[str, Any]]) -> Workflow:
    workflow = Workflow(name=name)
    session.add(workflow)
    session.add(
        WorkflowVersion(
            workflow_id=workflow.id, version=1, definition={"name": name, "steps": steps}
        )
    )
    session.flush()
    return workflow
