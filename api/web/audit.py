"""Web UI page: the audit log (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.audit.router import list_events
from api.web.render import render
from api.web.session import PageAdmin
from shared.db import read_session

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/audit")
def audit_page(
    request: Request,
    who: PageAdmin,
    action: Annotated[str, Query(max_length=64)] = "",
    user: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    with read_session() as session:
        events, count = list_events(
            session,
            action=action or None,
            username=user or None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
    return render(
        request,
        "audit.html",
        who,
        events=events,
        count=count,
        page=page,
        pages=max(1, -(-count // PAGE_SIZE)),
        action=action,
        user=user,
    )
