"""Web UI pages: batches. A paged list; a new-batch form whose first post shows the cost
estimate (and the rows that cannot run, by line) and whose second, "Confirm and start",
stores the batch; and a batch page that static/batch.js keeps up to date from
GET /api/v1/batches/{id}.

The form goes through the API's own intake and service (api/batches), so the page and
the API read, estimate and refuse a dataset alike. Nothing is stored before the
confirmation: the estimate page carries the dataset's exact bytes (base64) in the
confirmation form, which is parsed again, as sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Table, select
from starlette.datastructures import UploadFile

from api.batches import intake, service
from api.batches.intake import RawBatch
from api.batches.schemas import BatchEstimatePublic, BatchOptions, BatchPublic
from api.errors import ApiError, Conflict, NotFound, Unprocessable
from api.web.forms import api_errors
from api.web.listing import render_filtered_list
from api.web.render import render
from api.web.session import FormMember, PageMember, PageViewer
from api.workflows.service import list_workflows
from shared.automation_models import BatchItem, BatchStatus
from shared.batches import MAX_IN_FLIGHT
from shared.config import get_settings
from shared.datasets import FORMATS, detect_format
from shared.db import read_session
from shared.models import Run

router = APIRouter(prefix="/batches", include_in_schema=False)

PAGE_SIZE = 25
ITEMS_PAGE_SIZE = 50
INPUT_PREVIEW_CHARS = 120
FIELDS = ("workflow", "file", "dataset", "format", "max_in_flight", "name", "skip_invalid")
# Starlette refuses a form field over 1 MiB; the confirmation carries the dataset as
# base64 (4 bytes per 3) in one field, next to a few small ones.
MAX_FORM_PART_BYTES = 1024 * 1024
FORM_OVERHEAD_BYTES = 16 * 1024
DEFAULT_IN_FLIGHT = int(BatchOptions.model_fields["max_in_flight"].default)

ITEMS = cast(Table, BatchItem.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]


def max_dataset_bytes() -> int:
    """The largest dataset the form can take through both of its posts."""
    room = min(get_settings().max_body_bytes - FORM_OVERHEAD_BYTES, MAX_FORM_PART_BYTES)
    return room // 4 * 3


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KiB"


def eta_text(seconds: float | None) -> str:
    """As static/batch.js writes it."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- the list ------------------------------------------------------------------------


@router.get("")
def list_page(
    request: Request,
    who: PageViewer,
    status: Annotated[str, Query(max_length=32)] = "",
    workflow: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    return render_filtered_list(
        request,
        who,
        "batches_list.html",
        items_name="batches",
        statuses=[s.value for s in BatchStatus],
        status=status,
        workflow=workflow,
        page=page,
        page_size=PAGE_SIZE,
        list_items=lambda session, status, workflow, limit, offset: service.list_batches(
            session=session, status=status, workflow=workflow, limit=limit, offset=offset
        ),
    )


# --- a new batch: the form, the estimate, the confirmation ----------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """The new-batch form (or its confirmation) as posted."""

    workflow: str = ""
    dataset: str = ""  # pasted text
    carried: str = ""  # base64 of the dataset an earlier post read
    filename: str = ""  # the uploaded file's name (it names the batch by default)
    format: str = ""  # "" to detect it
    max_in_flight: str = str(DEFAULT_IN_FLIGHT)
    name: str = ""
    skip_invalid: bool = False
    upload: bytes | None = None
    upload_name: str = ""
    upload_type: str | None = None


async def _sent(request: Request) -> Sent:
    form = await request.form()  # parsed once; the Form* dependency checked its CSRF token

    def text(key: str) -> str:
        value = form.get(key)
        return value if isinstance(value, str) else ""

    upload = form.get("file")
    data = await upload.read() if isinstance(upload, UploadFile) else None
    chosen = isinstance(upload, UploadFile) and bool(upload.filename or data)
    return Sent(
        workflow=text("workflow"),
        dataset=text("dataset"),
        carried=text("dataset_b64"),
        filename=text("filename"),
        format=text("format"),
        max_in_flight=text("max_in_flight"),
        name=text("name"),
        skip_invalid=text("skip_invalid") == "true",
        upload=data if chosen else None,
        upload_name=(upload.filename or "") if isinstance(upload, UploadFile) else "",
        upload_type=upload.content_type if isinstance(upload, UploadFile) else None,
    )


SentForm = Annotated[Sent, Depends(_sent)]


@dataclass(frozen=True, slots=True)
class Source:
    """The dataset's bytes and where they came from: `field` shows its errors."""

    data: bytes
    filename: str | None
    content_type: str | None
    field: str  # "file" (an upload, now or carried from the last post) or "dataset"


class FormProblem(Exception):
    """The form itself is wrong (no dataset, too large) before the API's intake reads it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _file_name(name: str) -> str | None:
    """As the API takes it (api/batches/intake.py): it names the batch by default."""
    return name.replace("\x00", "")[: intake.MAX_NAME_CHARS] or None


def _source(sent: Sent) -> Source:
    """A file just chosen, else pasted text, else the dataset carried from the last post."""
    if sent.upload is not None:
        found = Source(sent.upload, _file_name(sent.upload_name), sent.upload_type, "file")
    elif sent.dataset.strip():
        found = Source(sent.dataset.encode(), None, None, "dataset")
    elif sent.carried:
        try:
            data = base64.b64decode(sent.carried, validate=True)
        except (binascii.Error, ValueError):
            raise FormProblem(
                "file", "the dataset sent back was damaged: choose the file again"
            ) from None
        found = Source(data, _file_name(sent.filename), None, "file")
    else:
        raise FormProblem("dataset", "choose a file, or paste the dataset here")
    limit = max_dataset_bytes()
    if len(found.data) > limit:
        raise FormProblem(
            found.field,
            f"the dataset is {size_text(len(found.data))}; this form takes up to "
            f"{size_text(limit)}: send larger ones with “ownkey batch submit” or the API",
        )
    return found


def _pasted_format(text: str) -> str:
    """Pasted text has no file name: a list is JSON, an object a line JSONL, else CSV."""
    start = text.lstrip()[:1]
    return {"[": "json", "{": "jsonl"}.get(start, "csv")


def _format(sent: Sent, source: Source) -> str | None:
    """The format chosen, or guessed for pasted text; None: the intake detects it."""
    if sent.format:
        return sent.format
    if source.field == "dataset":
        return _pasted_format(sent.dataset)
    return None


def _raw(sent: Sent, source: Source, fmt: str | None) -> RawBatch:
    fields = {"workflow": sent.workflow, "skip_invalid": "true" if sent.skip_invalid else "false"}
    optional = {"max_in_flight": sent.max_in_flight.strip(), "name": sent.name.strip()}
    fields.update({k: v for k, v in optional.items() if v})
    if fmt:
        fields["format"] = fmt
    return RawBatch(
        fields=fields, file=source.data, filename=source.filename, file_type=source.content_type
    )


def _errors(exc: ApiError, source_field: str) -> tuple[dict[str, str], list[str]]:
    """{field: message}, and the messages of the rows that cannot run ("line 3: ...").
    The dataset's errors go next to the field it came from."""
    if not (isinstance(exc, Unprocessable) and isinstance(exc.detail, list)):
        return api_errors(exc, FIELDS), []
    rows: list[str] = []
    rest = []
    for error in exc.detail:
        # A row's problem has its line; "... and N more bad rows" follows them.
        if "line" in error or (rows and error["loc"][-1] == intake.FILE_FIELD):
            rows.append(str(error["msg"]))
        else:
            rest.append(error)
    errors = api_errors(Unprocessable(rest), FIELDS) if rest else {}
    if intake.FILE_FIELD in errors:
        errors[source_field] = errors.pop(intake.FILE_FIELD)
    if "skip_invalid" in errors:
        errors["skip_invalid"] = errors["skip_invalid"].replace(
            "send skip_invalid=true", "tick “Skip invalid rows”"
        )
    return errors, rows


def _workflow_choices() -> list[tuple[str, str]]:
    with read_session() as session:
        return [(w.id, w.name) for w in list_workflows(session=session)]


def _new_page(
    request: Request,
    who: PageMember,
    *,
    sent: Sent,
    source: Source | None = None,
    errors: dict[str, str] | None = None,
    bad_rows: list[str] | None = None,
    estimate: BatchEstimatePublic | None = None,
    confirm: dict[str, str] | None = None,
) -> Response:
    # An upload is carried to the next post: a file input cannot be filled in again.
    carried = None
    if source is not None and source.field == "file":
        carried = {
            "b64": base64.b64encode(source.data).decode(),
            "filename": source.filename or "",
            "size": size_text(len(source.data)),
        }
    return render(
        request,
        "batch_new.html",
        who,
        sent=sent,
        carried=carried,
        errors=errors or {},
        bad_rows=bad_rows or [],
        estimate=estimate,
        confirm=confirm,
        workflows=_workflow_choices(),
        formats=FORMATS,
        max_in_flight=MAX_IN_FLIGHT,
        default_in_flight=DEFAULT_IN_FLIGHT,
        max_bytes=max_dataset_bytes(),
        max_size=size_text(max_dataset_bytes()),
        api_max_size=size_text(get_settings().max_dataset_bytes),
        status_code=422 if errors or bad_rows else 200,
    )


@router.get("/new")
def new_page(request: Request, who: PageMember) -> Response:
    return _new_page(request, who, sent=Sent())


@router.post("/new")
def estimate(request: Request, who: FormMember, sent: SentForm) -> Response:
    """The estimate and the rows that cannot run; stores nothing."""
    try:
        source = _source(sent)
    except FormProblem as exc:
        return _new_page(request, who, sent=sent, errors={exc.field: str(exc)})
    fmt = _format(sent, source)
    try:
        found = service.estimate(intake.parse(_raw(sent, source, fmt)))
    except ApiError as exc:
        errors, bad_rows = _errors(exc, source.field)
        return _new_page(request, who, sent=sent, source=source, errors=errors, bad_rows=bad_rows)
    confirm = {
        "workflow": sent.workflow,
        "dataset_b64": base64.b64encode(source.data).decode(),
        "filename": source.filename or "",
        "format": fmt
        or detect_format(explicit=None, filename=source.filename, content_type=source.content_type),
        "max_in_flight": sent.max_in_flight.strip(),
        "name": sent.name.strip(),
        "skip_invalid": "true" if sent.skip_invalid else "false",
    }
    return _new_page(request, who, sent=sent, source=source, estimate=found, confirm=confirm)


@router.post("/confirm")
def confirm(request: Request, who: FormMember, sent: SentForm) -> Response:
    """Store the batch as estimated (the same bytes, parsed again) and start it."""
    try:
        source = _source(sent)
    except FormProblem as exc:
        return _new_page(request, who, sent=sent, errors={exc.field: str(exc)})
    try:
        batch_id, skipped = service.submit(
            intake.parse(_raw(sent, source, sent.format or None)), actor=who.actor
        )
    except ApiError as exc:  # e.g. the workflow changed since the estimate
        errors, bad_rows = _errors(exc, source.field)
        return _new_page(request, who, sent=sent, source=source, errors=errors, bad_rows=bad_rows)
    suffix = f"?skipped={len(skipped)}" if skipped else ""
    return RedirectResponse(f"/batches/{batch_id}{suffix}", status_code=303)


# --- one batch -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One dataset row and its current run."""

    line: int
    input: str  # compact JSON, cut short
    run_id: str | None
    status: str  # the run's, or "waiting" before it has one
    input_tokens: int | None
    output_tokens: int | None
    cost_nanos: int | None
    cost_incomplete: bool
    error: str | None
    earlier_runs: int  # retries gave the item new runs


def _preview(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= INPUT_PREVIEW_CHARS else text[: INPUT_PREVIEW_CHARS - 1] + "…"


def _items(batch_id: str, page: int) -> list[ItemRow]:
    with read_session() as session:
        rows = session.execute(
            select(
                ITEMS.c.position,
                ITEMS.c.input,
                ITEMS.c.run_id,
                ITEMS.c.previous_run_ids,
                RUNS.c.status,
                RUNS.c.input_tokens,
                RUNS.c.output_tokens,
                RUNS.c.cost_nanos,
                RUNS.c.cost_incomplete,
                RUNS.c.error,
            )
            .select_from(ITEMS.outerjoin(RUNS, RUNS.c.id == ITEMS.c.run_id))
            .where(ITEMS.c.batch_id == batch_id)
            .order_by(ITEMS.c.position)
            .offset((page - 1) * ITEMS_PAGE_SIZE)
            .limit(ITEMS_PAGE_SIZE)
        ).all()
    return [
        ItemRow(
            line=row.position,
            input=_preview(row.input),
            run_id=row.run_id,
            status=row.status or "waiting",
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost_nanos=row.cost_nanos,
            cost_incomplete=bool(row.cost_incomplete),
            error=row.error,
            earlier_runs=len(row.previous_run_ids or []),
        )
        for row in rows
    ]


def _retryable(batch: BatchPublic) -> bool:
    """What "Retry failed items" would give a new run (api/batches' retry_batch)."""
    not_succeeded = batch.progress.failed + batch.progress.cancelled
    return batch.status != BatchStatus.cancelled and not_succeeded > 0


def _batch_page(
    request: Request,
    who: PageViewer,
    batch_id: str,
    *,
    page: int = 1,
    notice: str | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        with read_session() as session:
            batch = service.get_batch(session=session, batch_id=batch_id)
    except NotFound as exc:
        return render(
            request, "error.html", who, status_code=404, title="Not found", message=exc.message
        )
    in_flight = batch.progress.queued + batch.progress.running
    return render(
        request,
        "batch.html",
        who,
        batch=batch,
        items=_items(batch.id, page),
        page=page,
        pages=max(1, -(-batch.total // ITEMS_PAGE_SIZE)),
        first=(page - 1) * ITEMS_PAGE_SIZE + 1,
        live=batch.status == BatchStatus.running or in_flight > 0,
        in_flight=in_flight,
        cancellable=batch.status == BatchStatus.running,
        retryable=_retryable(batch),
        eta=eta_text(batch.eta_seconds),
        notice=notice,
        message=message,
        status_code=status_code,
    )


@router.get("/{batch_id}")
def batch_page(
    request: Request,
    batch_id: str,
    who: PageViewer,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    skipped: Annotated[int, Query(ge=0)] = 0,
    retried: Annotated[int | None, Query(ge=0)] = None,
    cancelled: bool = False,
) -> Response:
    notice = None
    if skipped:
        notice = f"Started. {skipped} invalid row{'s' if skipped != 1 else ''} skipped."
    elif retried is not None:
        notice = (
            f"{retried} item{'s' if retried != 1 else ''} given a new run."
            if retried
            else "No item needed a new run."
        )
    elif cancelled:
        notice = "Cancelled: waiting items will not start."
    return _batch_page(request, who, batch_id, page=page, notice=notice)


def _act(request: Request, who: FormMember, batch_id: str, act: Callable[[], str]) -> Response:
    """Do `act` (which answers where to go next); a refusal is shown on the batch page."""
    try:
        target = act()
    except Conflict as exc:
        return _batch_page(request, who, batch_id, message=exc.message, status_code=409)
    except NotFound:
        return _batch_page(request, who, batch_id)  # a 404 page
    return RedirectResponse(target, status_code=303)


@router.post("/{batch_id}/cancel")
def cancel(request: Request, batch_id: str, who: FormMember) -> Response:
    def act() -> str:
        service.cancel_batch(batch_id, actor=who.actor)
        return f"/batches/{batch_id}?cancelled=true"

    return _act(request, who, batch_id, act)


@router.post("/{batch_id}/retry")
def retry(request: Request, batch_id: str, who: FormMember) -> Response:
    def act() -> str:
        retried = service.retry_batch(batch_id, actor=who.actor)
        return f"/batches/{batch_id}?retried={retried}"

    return _act(request, who, batch_id, act)
