"""A filtered, paged list page (runs, batches): status and workflow filters, pages of a
fixed size, links that keep the filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import Principal
from api.web.render import render
from api.workflows.service import list_workflows
from shared.db import read_session

# (session, status, workflow, limit, offset) -> (the page's items, the total count)
ListItems = Callable[[Session, str | None, str | None, int, int], tuple[Sequence[Any], int]]


def render_filtered_list(
    request: Request,
    who: Principal,
    template: str,
    *,
    items_name: str,
    statuses: list[str],
    status: str,
    workflow: str,
    page: int,
    page_size: int,
    list_items: ListItems,
) -> Response:
    """An unknown status shows everything, with a note, rather than an error page."""
    unknown_status = bool(status) and status not in statuses
    with read_session() as session:
        items, count = list_items(
            session,
            None if unknown_status else status or None,
            workflow or None,
            page_size,
            (page - 1) * page_size,
        )
        workflow_names = [w.name for w in list_workflows(session=session)]
    filters = {k: v for k, v in (("status", status), ("workflow", workflow)) if v}
    context: dict[str, Any] = {items_name: items}
    return render(
        request,
        template,
        who,
        **context,
        count=count,
        page=page,
        pages=max(1, -(-count // page_size)),
        first=(page - 1) * page_size + 1,
        statuses=statuses,
        workflow_names=workflow_names,
        status=status,
        workflow=workflow,
        unknown_status=unknown_status,
        query=lambda **change: "?" + urlencode({**filters, **change}),
    )
