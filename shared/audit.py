"""The audit log: who added, tested or deleted a key, changed an agent or workflow,
started or cancelled a run, or changed a user or token.

`record` adds the event to the caller's session, so it commits (or rolls back) with
the change it describes. Details hold names and settings, never secrets or prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session

from shared.models import AuditEvent, new_id, utcnow

__all__ = ["Actor", "record"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a signed-in user, or the user behind an API token."""

    user_id: str | None
    username: str


def record(
    db: Session | Connection,
    actor: Actor,
    action: str,
    *,
    target_type: str,
    target_id: str | None = None,
    target_name: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    db.execute(
        insert(AuditEvent),
        {
            "id": new_id(),
            "at": utcnow(),
            "user_id": actor.user_id,
            "username": actor.username,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "target_name": target_name,
            "detail": detail or {},
        },
    )
