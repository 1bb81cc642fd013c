from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from api.deps import Member, ReadSessionDep, SessionDep, Viewer
from api.workflows import service
from api.workflows.schemas import WORKFLOW_BODY_DOC, WorkflowList, WorkflowPublic

router = APIRouter(prefix="/workflows", tags=["workflows"])


async def _raw_body(request: Request) -> tuple[bytes, str]:
    return await request.body(), request.headers.get("content-type", "application/json")


RawBody = Annotated[tuple[bytes, str], Depends(_raw_body)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowPublic,
    openapi_extra=WORKFLOW_BODY_DOC,
)
def create_workflow(raw: RawBody, session: SessionDep, who: Member) -> WorkflowPublic:
    """Create a workflow from JSON, or YAML with `Content-Type: application/yaml`."""
    spec = service.parse_and_validate(session=session, body=raw[0], content_type=raw[1])
    return service.to_public(*service.create_workflow(session=session, spec=spec, actor=who.actor))


@router.get("", response_model=WorkflowList)
def list_workflows(session: ReadSessionDep, _: Viewer) -> WorkflowList:
    data = service.list_workflows(session=session)
    return WorkflowList(data=data, count=len(data))


@router.get("/{workflow_id}", response_model=WorkflowPublic)
def get_workflow(workflow_id: str, session: ReadSessionDep, _: Viewer) -> WorkflowPublic:
    workflow = service.get_workflow(session=session, workflow_id=workflow_id)
    return service.to_public(workflow, service.current_version(session, workflow))


@router.put("/{workflow_id}", response_model=WorkflowPublic, openapi_extra=WORKFLOW_BODY_DOC)
def update_workflow(
    workflow_id: str, raw: RawBody, session: SessionDep, who: Member
) -> WorkflowPublic:
    """Store a new version of the workflow; running and past runs keep theirs."""
    workflow = service.get_workflow(session=session, workflow_id=workflow_id)
    spec = service.parse_and_validate(session=session, body=raw[0], content_type=raw[1])
    return service.to_public(
        *service.update_workflow(session=session, workflow=workflow, spec=spec, actor=who.actor)
    )
