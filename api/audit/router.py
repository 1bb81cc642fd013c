from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from api.deps import Admin, ReadSessionDep
from shared.models import AuditEvent

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditEventPublic(BaseModel):
    id: str
    at: datetime
    username: str
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    detail: dict[str, Any]


class AuditList(BaseModel):
    data: list[AuditEventPublic]
    count: int


def list_events(
    session: Session,
    *,
    action: str | None = None,
    username: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEvent], int]:
    """Newest first; `action` may be a prefix ("key." for everything about keys)."""
    query = select(AuditEvent)
    if action:
        query = query.where(col(AuditEvent.action).startswith(action))
    if username:
        query = query.where(AuditEvent.username == username)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(AuditEvent.at).desc()).limit(limit).offset(offset)).all()
    return list(rows), count


@router.get("", response_model=AuditList)
def audit_log(
    session: ReadSessionDep,
    _: Admin,
    action: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditList:
    """Who added, tested or deleted a key, changed an agent or workflow, started or
    cancelled a run, or changed a user or token; newest first."""
    rows, count = list_events(session, action=action, username=user, limit=limit, offset=offset)
    data = [AuditEventPublic.model_validate(r, from_attributes=True) for r in rows]
    return AuditList(data=data, count=count)
