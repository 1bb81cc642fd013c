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


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
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
    app.add_exception_handler(Exception, _unexpected)
