"""FastAPI dependencies as named aliases: sessions, and who is calling with which role.

A caller is a `Principal`: the user behind an API token (`Authorization: Bearer`), or
behind the web UI's session cookie. Every route names the least role it needs
(`Viewer`, `Member`, `Admin`); the role is the user's at the time of the request.

Cookies ride along with any request a browser makes, so a cookie-authenticated request
that changes something must also carry the session's CSRF token (header `X-CSRF-Token`,
or the `csrf_token` field of a web form). Bearer tokens are never sent by a browser on
its own, so they need none.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from shared.audit import Actor
from shared.crypto import hash_token
from shared.db import read_session, session_scope
from shared.models import Role, User
from shared.tokens import find_active_token
from shared.users import find_session

SESSION_COOKIE = "ownkey_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    username: str
    role: Role
    via: str  # "token" or "session"
    csrf_token: str | None = None  # the web session's; None for API tokens

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, username=self.username)

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


def principal_for(user: User, *, via: str, csrf_token: str | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        via=via,
        csrf_token=csrf_token,
    )


_bearer = HTTPBearer(auto_error=False)

UNAUTHORIZED = HTTPException(
    status_code=401,
    detail="missing or invalid API token; send 'Authorization: Bearer <token>' "
    "(create one under Settings → API tokens, or with `ownkey token create`)",
    headers={"WWW-Authenticate": "Bearer"},
)
CSRF_REFUSED = HTTPException(
    status_code=403,
    detail=f"missing or wrong CSRF token: a signed-in browser must send the {CSRF_HEADER} "
    "header (or the form's csrf_token field) with every change",
)

# A valid token is remembered this long, so a busy client costs one lookup per interval
# instead of one per request. A revoked token, a disabled user or a changed role
# therefore takes effect within this time.
TOKEN_CACHE_SECONDS = 5.0
_token_cache: dict[str, tuple[float, Principal]] = {}
_token_cache_lock = threading.Lock()


def _cached_principal(token_hash: str) -> Principal | None:
    with _token_cache_lock:
        cached = _token_cache.get(token_hash)
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


def _lookup_token(token_hash: str) -> Principal | None:
    now = time.monotonic()
    with read_session() as session:
        found = find_active_token(session, token_hash)
        principal = None if found is None else principal_for(found[1], via="token")
    with _token_cache_lock:
        if principal is None:
            _token_cache.pop(token_hash, None)
        else:
            if len(_token_cache) > 10_000:
                _token_cache.clear()
            _token_cache[token_hash] = (now + TOKEN_CACHE_SECONDS, principal)
    return principal


def forget_cached_tokens() -> None:
    """After a change to users or tokens made by this process: apply it at once here."""
    with _token_cache_lock:
        _token_cache.clear()


def session_principal(cookie_value: str) -> Principal | None:
    with read_session() as session:
        found = find_session(session, cookie_value)
        if found is None:
            return None
        web_session, user = found
        return principal_for(user, via="session", csrf_token=web_session.csrf_token)


def csrf_matches(principal: Principal, sent: str | None) -> bool:
    expected = principal.csrf_token
    return bool(expected and sent and hmac.compare_digest(expected, sent))


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Async, so that a cached token costs no hop to the thread pool (a sync dependency
    would take one per request); only a cache miss goes to the database, in a thread."""
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise UNAUTHORIZED
        token_hash = hash_token(credentials.credentials)
        principal = _cached_principal(token_hash) or await run_in_threadpool(
            _lookup_token, token_hash
        )
        if principal is None:
            raise UNAUTHORIZED
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise UNAUTHORIZED
    principal = await run_in_threadpool(session_principal, cookie)
    if principal is None:
        raise UNAUTHORIZED
    if request.method not in SAFE_METHODS and not csrf_matches(
        principal, request.headers.get(CSRF_HEADER)
    ):
        raise CSRF_REFUSED
    return principal


def require(role: Role) -> Any:
    """A dependency: the caller, if their role is at least `role`; else 403."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.may(role):
            raise HTTPException(
                status_code=403,
                detail=f"your role ({principal.role}) cannot do this; it needs {role} or above",
            )
        return principal

    return Depends(dependency)


Viewer = Annotated[Principal, require(Role.viewer)]
Member = Annotated[Principal, require(Role.member)]
Admin = Annotated[Principal, require(Role.admin)]
