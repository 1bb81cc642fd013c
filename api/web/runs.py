"""Web UI pages: runs. A filtered, paged list, and a run page that static/run.js keeps
up to date (from GET /api/v1/runs/{id}) until the run has ended."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from api.errors import Conflict, NotFound
from api.runs import service
from api.web import graph
from api.web.listing import render_filtered_list
from api.web.render import render
from api.web.session import FormMember, PageViewer
from shared.db import read_session
from shared.models import FINAL_RUN_STATUSES, RunStatus
from shared.queues import DEFAULT_QUEUE

router = APIRouter(prefix="/runs", include_in_schema=False)

PAGE_SIZE = 25


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
        "runs_list.html",
        items_name="runs",
        statuses=[s.value for s in RunStatus],
        status=status,
        workflow=workflow,
        page=page,
        page_size=PAGE_SIZE,
        list_items=lambda session, status, workflow, limit, offset: service.list_runs(
            session=session, status=status, workflow=workflow, limit=limit, offset=offset
        ),
    )


def _run_page(
    request: Request, who: PageViewer, run_id: str, *, message: str | None = None
) -> Response:
    try:
        with read_session() as session:
            run = service.get_run(session=session, run_id=run_id)
    except NotFound as exc:
        return render(
            request, "error.html", who, status_code=404, title="Not found", message=exc.message
        )
    nodes = graph.nodes_of(step.model_dump() for step in run.steps)
    return render(
        request,
        "run.html",
        who,
        run=run,
        live=not (run.status in FINAL_RUN_STATUSES and run.finished_at),
        cancellable=run.status not in FINAL_RUN_STATUSES,
        graph_svg=graph.render_svg(nodes, {step.id: step.status for step in run.steps}),
        input_json=json.dumps(run.input, indent=2, ensure_ascii=False),
        default_queue=DEFAULT_QUEUE,
        message=message,
        status_code=409 if message else 200,
    )


@router.get("/{run_id}")
def run_page(request: Request, run_id: str, who: PageViewer) -> Response:
    return _run_page(request, who, run_id)


@router.post("/{run_id}/cancel")
def cancel(request: Request, run_id: str, who: FormMember) -> Response:
    try:
        service.cancel_run(run_id, actor=who.actor)
    except Conflict as exc:
        return _run_page(request, who, run_id, message=exc.message)
    except NotFound:
        return _run_page(request, who, run_id)  # a 404 page
    return RedirectResponse(f"/runs/{run_id}", status_code=303)
