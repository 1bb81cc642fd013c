"""FastAPI dependencies as named aliases: `SessionDep`, `ReadSessionDep`, `CurrentToken`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from shared.crypto import hash_token
from shared.db import read_session, session_scope
from shared.models import ApiToken
from shared.tokens import find_active_token


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def get_read_session() -> Iterator[Session]:
    with read_session() as session:
        yield session


# scope="function": commit before the response is sent, not after (FastAPI's default for
# yield dependencies since 0.118). Otherwise a client can read its own write too early,
# and a failed commit is never reported: the 2xx has already gone out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# For routes that only read: on SQLite they neither wait for nor block the workers.
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]

_bearer = HTTPBearer(auto_error=False)

UNAUTHORIZED = HTTPException(
    status_code=401,
    detail="missing or invalid API token; send 'Authorization: Bearer <token>' "
    "(create one with `ownkey token create`)",
    headers={"WWW-Authenticate": "Bearer"},
)

# A valid token is remembered this long, so a busy client costs one lookup per interval
# instead of one per request. A revoked token therefore stops working within this time.
TOKEN_CACHE_SECONDS = 5.0
_token_cache: dict[str, tuple[float, ApiToken]] = {}
_token_cache_lock = threading.Lock()


def _cached_token(token_hash: str) -> ApiToken | None:
    with _token_cache_lock:
        cached = _token_cache.get(token_hash)
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


def _lookup_token(token_hash: str) -> ApiToken | None:
    now = time.monotonic()
    with read_session() as session:
        token = find_active_token(session, token_hash)
    with _token_cache_lock:
        if token is None:
            _token_cache.pop(token_hash, None)
        else:
            if len(_token_cache) > 10_000:
                _token_cache.clear()
            _token_cache[token_hash] = (now + TOKEN_CACHE_SECONDS, token)
    return token


async def current_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    """Async, so that a cached token costs no hop to the thread pool (a sync dependency
    would take one per request); only a cache miss goes to the database, in a thread."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    token_hash = hash_token(credentials.credentials)
    token = _cached_token(token_hash) or await run_in_threadpool(_lookup_token, token_hash)
    if token is None:
        raise UNAUTHORIZED
    return token


CurrentToken = Annotated[ApiToken, Depends(current_token)]
