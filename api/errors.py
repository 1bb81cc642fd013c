"""ownkey's API errors and the handlers that turn every failure into a clear JSON
answer. No traceback ever reaches a client: unexpected errors are logged server-side
and answered with a 500 that says only that."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("ownkey.api")


class ApiError(Exception):
    status_code = 400

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail if self.detail is not None else self.message}


class NotFound(ApiError):
    status_code = 404


class Forbidden(ApiError):
    status_code = 403


class Conflict(ApiError):
    status_code = 409


class Unprocessable(ApiError):
    """422 naming what to fix: `errors` is a list of {loc, msg} like FastAPI's own."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["msg"]) for e in errors), detail=errors)


class BadGateway(ApiError):
    """The provider answered with an error; the message is the provider's, scrubbed."""

    status_code = 502


class ServiceUnavailable(ApiError):
    """A service ownkey depends on (Redis) did not answer."""

    status_code = 503


def field_error(field: str | list[str], message: str, **extra: Any) -> dict[str, Any]:
    loc = ["body", *([field] if isinstance(field, str) else field)]
    return {"loc": loc, "msg": message, "type": "value_error", **extra}


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        # Drop the echoed input: it may be a secret (an api_key of the wrong type).
        errors.append({k: v for k, v in error.items() if k in ("loc", "msg", "type")})
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


# FastAPI answers any failure to decode a JSON body other than a syntax error with this
# one sentence; the cause says what was actually wrong.
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _body_error_message(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "the body holds an integer with too many digits"
    return "the body is not valid JSON"


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
        detail = _body_error_message(exc.__cause__)
    return JSONResponse(
        {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    """A value that passed validation but that the database cannot store (a NUL character
    for PostgreSQL, an integer wider than 64 bits): the client's error, not a 500. Each
    schema should refuse such values itself and name the field; this is the safety net."""
    log.warning(
        "unstorable value on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    message = (
        "text must not contain NUL (\\u0000) characters"
        if "NUL" in str(exc)
        else "a value is out of the range the database can store"
    )
    return JSONResponse(
        {"detail": [{"loc": ["request"], "msg": message, "type": "value_error"}]},
        status_code=422,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    return JSONResponse({"detail": "internal error; see the API server's log"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)
