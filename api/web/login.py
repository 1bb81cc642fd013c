"""Signing in and out.

The sign-in form has no session yet, so its CSRF protection is a double-submit token:
a random value in a cookie and in the form, which a cross-site form cannot read.
Failed sign-ins are throttled per user and address (shared/login_limits.py).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from functools import lru_cache
from typing import Annotated

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import SESSION_COOKIE
from api.web.render import render
from api.web.session import FormViewer
from shared.config import get_settings
from shared.db import session_scope
from shared.login_limits import LoginThrottle
from shared.users import SESSION_LIFETIME, SignedIn, authenticate, end_session, start_session

log = logging.getLogger("ownkey.web")
router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "ownkey_login_csrf"


@lru_cache(maxsize=1)
def _throttle() -> LoginThrottle:
    return LoginThrottle(redis.Redis.from_url(get_settings().redis_url, socket_timeout=5))


def _safe_next(next_path: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if next_path and next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/"


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        next_path=next_path,
        error=error,
        username=username,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=3600,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_path=_safe_next(next))


def _sign_in(username: str, password: str) -> SignedIn | None:
    with session_scope() as session:
        user = authenticate(session, username, password)
        return None if user is None else start_session(session, user)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    next_path = _safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error="The sign-in form had expired. Please sign in again.",
            status_code=403,
        )
    address = request.client.host if request.client else "unknown"
    throttle = _throttle()
    try:
        wait = await run_in_threadpool(throttle.retry_after, username, address)
    except redis.RedisError:
        log.warning("sign-in refused: Redis is not reachable for sign-in throttling")
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error="Signing in is unavailable for a moment (ownkey cannot reach Redis).",
            status_code=503,
        )
    if wait is not None:
        minutes = max(1, round(wait / 60))
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error=f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            status_code=429,
        )
    signed_in = await run_in_threadpool(_sign_in, username, password)
    if signed_in is None:
        await run_in_threadpool(throttle.failed, username, address)
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error="Wrong username or password.",
            status_code=401,
        )
    await run_in_threadpool(throttle.succeeded, username, address)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.cookie_value,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, _: FormViewer) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with session_scope() as session:
            end_session(session, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
