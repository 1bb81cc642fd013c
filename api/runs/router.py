from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import Member, ReadSessionDep, Viewer
from api.runs import service
from api.runs.schemas import (
    IDEMPOTENCY_HEADER,
    MAX_IDEMPOTENCY_KEY_CHARS,
    REPLAYED_HEADER,
    RunAccepted,
    RunCreate,
    RunList,
    RunPublic,
)
from shared.db import read_session
from shared.models import RunStatus

router = APIRouter(prefix="/runs", tags=["runs"])


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description="Any unique string (a UUID): resending the same request with the same "
        "key returns the run it created, never a second one. Global to this ownkey, not "
        "per API token. Reusing a key for a different request is a 422.",
    ),
]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunAccepted)
def submit_run(
    body: RunCreate,
    who: Member,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Accept a run at once; workers execute its steps. Poll GET /runs/{id}.
    A replayed Idempotency-Key answers with the existing run and `Idempotent-Replayed: true`."""
    created = service.submit_run(body, actor=who.actor, idempotency_key=idempotency_key)
    if created.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return RunAccepted(id=created.run_id, status=created.status)


@router.get("", response_model=RunList)
def list_runs(
    session: ReadSessionDep,
    _: Viewer,
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
def get_run(run_id: str, session: ReadSessionDep, _: Viewer) -> RunPublic:
    return service.get_run(session=session, run_id=run_id)


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run_id: str, who: Member) -> RunPublic:
    """Cancel a run: waiting steps never call a provider; a step already calling one
    finishes (it is paid for), but its output is discarded. 409 if the run had ended."""
    service.cancel_run(run_id, actor=who.actor)
    with read_session() as session:
        return service.get_run(session=session, run_id=run_id)
