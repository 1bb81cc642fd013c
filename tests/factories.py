"""Rows for unit tests, made in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from shared.automation_models import WebhookSubscription
from shared.keystore import get_secret_box
from shared.models import Agent, ProviderKey, Run, Workflow, WorkflowVersion, utcnow


def make_key(
    session: Session,
    *,
    provider: str = "openai",
    name: str = "k",
    base_url: str = "http://127.0.0.1:1/v1",
    **fields: Any,
) -> ProviderKey:
    key = ProviderKey(provider=provider, name=name, base_url=base_url, **fields)
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


def make_closed_run(
    session: Session,
    workflow: Workflow,
    *,
    status: str = "succeeded",
    input: dict[str, Any] | None = None,
    finished_at: datetime | None = None,
    batch_id: str | None = None,
    cost_nanos: int = 0,
) -> Run:
    """A run of `workflow` that has closed (its steps are not made)."""
    version = session.exec(
        select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow.id)
    ).one()
    run = Run(
        workflow_id=workflow.id,
        workflow_version_id=version.id,
        status=status,
        input=input or {},
        batch_id=batch_id,
        cost_nanos=cost_nanos,
        input_tokens=100,
        output_tokens=20,
        started_at=utcnow(),
        finished_at=finished_at or utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def make_webhook(
    session: Session,
    *,
    target_type: str,
    target_id: str,
    secret: str = "whsec_unit",
    url: str = "http://receiver.test/hook",
    created_at: datetime | None = None,
) -> WebhookSubscription:
    webhook = WebhookSubscription(
        target_type=target_type,
        target_id=target_id,
        url=url,
        secret_ciphertext=get_secret_box().encrypt(secret),
        created_at=created_at or utcnow(),
    )
    session.add(webhook)
    session.flush()
    return webhook
