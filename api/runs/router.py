from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentToken, ReadSessionDep
from api.runs import service
from api.runs.schemas import RunAccepted, RunCreate, RunList, RunPublic
from shared.models import RunStatus

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunAccepted)
def submit_run(body: RunCreate, _: CurrentToken) -> RunAccepted:
    """Accept a run at once; workers execute its steps. Poll GET /runs/{id}."""
    created = service.submit_run(body)
    return RunAccepted(id=created.run_id, status=created.status)


@router.get("", response_model=RunList)
def list_runs(
    session: ReadSessionDep,
    _: CurrentToken,
    status: Annotated[RunStatus | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    data, count = service.list_runs(
        session=session, status=status, workflow=workflow, limit=limit, offset=offset
    )
    return RunList(data=data, count=count)


@router.get("/{run_id}", response_model=RunPublic)
def get_run(run_id: str, session: ReadSessionDep, _: CurrentToken) -> RunPublic:
    return service.get_run(session=session, run_id=run_id)
