from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse

from api.batches import export, intake, service
from api.batches.intake import RawBatchDep
from api.batches.schemas import (
    BATCH_BODY_DOC,
    BatchAccepted,
    BatchEstimatePublic,
    BatchList,
    BatchPublic,
    BatchRetried,
)
from api.deps import Member, ReadSessionDep, Viewer
from shared.automation_models import BatchStatus
from shared.db import read_session

router = APIRouter(prefix="/batches", tags=["batches"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses={200: {"model": BatchEstimatePublic, "description": "dry_run: nothing stored"}},
    openapi_extra=BATCH_BODY_DOC,
)
def submit_batch(who: Member, raw: RawBatchDep) -> Any:
    """Accept a batch: one run per dataset row, `max_in_flight` of them at a time. The
    dataset is a JSON list (`dataset`) or an uploaded JSONL or CSV file (`file`, with the
    options as form fields). Rows that cannot run are listed by line in a 422, and
    nothing is stored, unless `skip_invalid` (the response then lists them). With
    `dry_run`, the answer is the cost estimate (200) and nothing is stored."""
    request = intake.parse(raw)
    if request.options.dry_run:
        return JSONResponse(jsonable_encoder(service.estimate(request)))
    batch_id, skipped = service.submit(request, actor=who.actor)
    with read_session() as session:
        batch = service.get_batch(session=session, batch_id=batch_id)
    return BatchAccepted(**batch.model_dump(), skipped=skipped, skipped_count=len(skipped))


@router.post("/estimate", response_model=BatchEstimatePublic, openapi_extra=BATCH_BODY_DOC)
def estimate_batch(_: Member, raw: RawBatchDep) -> BatchEstimatePublic:
    """What the batch would cost, as a low-high range with its basis (recent runs of the
    workflow, or prompt length); the same body as POST /batches; nothing is stored."""
    return service.estimate(intake.parse(raw))


@router.get("", response_model=BatchList)
def list_batches(
    session: ReadSessionDep,
    _: Viewer,
    status: Annotated[BatchStatus | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BatchList:
    data, count = service.list_batches(
        session=session, status=status, workflow=workflow, limit=limit, offset=offset
    )
    return BatchList(data=data, count=count)


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, session: ReadSessionDep, _: Viewer) -> BatchPublic:
    return service.get_batch(session=session, batch_id=batch_id)


@router.get(
    "/{batch_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in export.MEDIA_TYPES.values()}}},
)
def export_batch(
    batch_id: str,
    _: Viewer,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
) -> StreamingResponse:
    """Every item's input with its run's outcome: status, error, tokens and cost, and
    each step's output, tokens, cost and error. CSV has one column per input field and
    per step field (`<step>.output`, ...); JSONL one object per item."""
    found = export.layout(batch_id)
    lines = export.csv_lines(found) if format == "csv" else export.jsonl_lines(found)
    return StreamingResponse(
        lines,
        media_type=export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.{format}"'},
    )


@router.post("/{batch_id}/retry", response_model=BatchRetried)
def retry_batch(batch_id: str, who: Member) -> BatchRetried:
    """Give each item whose run failed (or was cancelled, or stopped by a budget) a new
    run; the old run ids stay on the item. A finished batch runs again; 409 if the
    batch was cancelled."""
    retried = service.retry_batch(batch_id, actor=who.actor)
    with read_session() as session:
        batch = service.get_batch(session=session, batch_id=batch_id)
    return BatchRetried(**batch.model_dump(), retried=retried)


@router.post("/{batch_id}/cancel", response_model=BatchPublic)
def cancel_batch(batch_id: str, who: Member) -> BatchPublic:
    """Cancel the batch: waiting items never start, runs in flight are cancelled. 409 if
    the batch had ended."""
    service.cancel_batch(batch_id, actor=who.actor)
    with read_session() as session:
        return service.get_batch(session=session, batch_id=batch_id)
