"""FastAPI dependencies as named aliases: `SessionDep`, `CurrentToken`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select
from starlette.exceptions import HTTPException

from shared.crypto import hash_token
from shared.db import session_scope
from shared.models import ApiToken


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# scope="function": commit before the response is sent, not after (FastAPI's default for
# yield dependencies since 0.118). Otherwise a client can read its own write too early,
# and a failed commit is never reported: the 2xx has already gone out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False)

UNAUTHORIZED = HTTPException(
    status_code=401,
    detail="missing or invalid API token; send 'Authorization: Bearer <token>' "
    "(create one with `ownkey token create`)",
    headers={"WWW-Authenticate": "Bearer"},
)


def current_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    with session_scope() as session:
        token = session.exec(
            select(ApiToken).where(
                ApiToken.token_hash == hash_token(credentials.credentials),
                ApiToken.revoked_at.is_(None),  # type: ignore[union-attr]
            )
        ).first()
    if token is None:
        raise UNAUTHORIZED
    return token


CurrentToken = Annotated[ApiToken, Depends(current_token)]
