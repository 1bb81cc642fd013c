"""Workflows: validated at the boundary, stored as immutable versions."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from api.errors import Conflict, NotFound, Unprocessable
from api.workflows.schemas import WorkflowPublic
from shared import audit
from shared.audit import Actor
from shared.models import Agent, Workflow, WorkflowVersion, utcnow
from shared.workflow_spec import (
    WorkflowInvalid,
    WorkflowSpec,
    parse_workflow_document,
    validate_workflow,
)


def _as_unprocessable(exc: WorkflowInvalid) -> Unprocessable:
    errors = []
    for error in exc.errors:
        loc: list[Any] = ["body"]
        if error.step is not None:
            loc += ["steps", error.step]
        loc.append(error.field)
        errors.append(
            {
                "loc": loc,
                "msg": error.message,
                "type": "value_error",
                "step": error.step,
                "field": error.field,
            }
        )
    return Unprocessable(errors)


def parse_and_validate(*, session: Session, body: bytes, content_type: str) -> WorkflowSpec:
    """Parse a JSON or YAML definition and check it against the agents that exist."""
    try:
        spec = parse_workflow_document(body, content_type)
        known = set(session.exec(select(Agent.name)).all())
        validate_workflow(spec, known_agents=known)
    except WorkflowInvalid as exc:
        raise _as_unprocessable(exc) from exc
    return spec


def create_workflow(
    *, session: Session, spec: WorkflowSpec, actor: Actor
) -> tuple[Workflow, WorkflowVersion]:
    if session.exec(select(Workflow.id).where(Workflow.name == spec.name)).first():
        raise Conflict(f"a workflow named '{spec.name}' already exists; PUT to change it")
    workflow = Workflow(name=spec.name, current_version=1)
    session.add(workflow)
    version = WorkflowVersion(
        workflow_id=workflow.id, version=1, definition=spec.model_dump(exclude_none=True)
    )
    session.add(version)
    session.flush()
    _audit(session, actor, "workflow.created", workflow)
    return workflow, version


def _audit(session: Session, actor: Actor, action: str, workflow: Workflow) -> None:
    audit.record(
        session,
        actor,
        action,
        target_type="workflow",
        target_id=workflow.id,
        target_name=workflow.name,
        detail={"version": workflow.current_version},
    )


def update_workflow(
    *, session: Session, workflow: Workflow, spec: WorkflowSpec, actor: Actor
) -> tuple[Workflow, WorkflowVersion]:
    """A new version; runs already submitted keep the version they started with."""
    if (
        spec.name != workflow.name
        and session.exec(select(Workflow.id).where(Workflow.name == spec.name)).first()
    ):
        raise Conflict(f"a workflow named '{spec.name}' already exists")
    workflow.name = spec.name
    workflow.current_version += 1
    workflow.updated_at = utcnow()
    version = WorkflowVersion(
        workflow_id=workflow.id,
        version=workflow.current_version,
        definition=spec.model_dump(exclude_none=True),
    )
    session.add(workflow)
    session.add(version)
    session.flush()
    _audit(session, actor, "workflow.updated", workflow)
    return workflow, version


def find_workflow(session: Session, id_or_name: str) -> Workflow | None:
    workflow = session.get(Workflow, id_or_name)
    if workflow is None:
        workflow = session.exec(select(Workflow).where(Workflow.name == id_or_name)).first()
    return workflow


def get_workflow(*, session: Session, workflow_id: str) -> Workflow:
    workflow = find_workflow(session, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow with id or name '{workflow_id}'")
    return workflow


def current_version(session: Session, workflow: Workflow) -> WorkflowVersion:
    return session.exec(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow.id,
            WorkflowVersion.version == workflow.current_version,
        )
    ).one()


def to_public(workflow: Workflow, version: WorkflowVersion) -> WorkflowPublic:
    definition = version.definition
    return WorkflowPublic(
        id=workflow.id,
        name=workflow.name,
        version=version.version,
        description=definition.get("description"),
        steps=definition["steps"],
        created_at=workflow.created_at,
        updated_at=workflow.updated_at,
    )


def list_workflows(*, session: Session) -> list[WorkflowPublic]:
    rows = session.exec(
        select(Workflow, WorkflowVersion)
        .where(
            WorkflowVersion.workflow_id == Workflow.id,
            WorkflowVersion.version == Workflow.current_version,
        )
        .order_by(Workflow.name)
    ).all()
    return [to_public(w, v) for w, v in rows]
