"""The ownkey API: a thin FastAPI app. Routers validate and call service functions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.agents.router import router as agents_router
from api.audit.router import router as audit_router
from api.batches.router import router as batches_router
from api.budgets.router import router as budgets_router
from api.errors import install_error_handlers
from api.keys.router import router as keys_router
from api.metrics.http import HttpMetrics
from api.metrics.registry import api_registry
from api.metrics.router import metrics_router
from api.prices.router import router as prices_router
from api.runs.router import router as runs_router
from api.schedules.router import router as schedules_router
from api.tokens.router import router as tokens_router
from api.usage.router import router as usage_router
from api.users.router import router as users_router
from api.web.router import install_web_ui
from api.webhooks.router import router as webhooks_router
from api.workers.router import router as workers_router
from api.workflows.router import router as workflows_router
from shared.config import get_settings
from shared.db import get_engine


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` (or the path's own limit in `path_limits`)
    with 413, whether or not they announce their length, before any of it is parsed."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                await _too_large(send, max_bytes)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise _BodyTooLarge(max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, max_bytes)


class _BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI, which turns any other error met while reading a
    body into "400 There was an error parsing the body", lets it through to the 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_message(max_bytes))


def _too_large_message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes"


async def _too_large(send: Send, max_bytes: int) -> None:
    await _send_json(send, 413, _too_large_message(max_bytes))


async def _send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RefuseNulInUrl:
    """Answer 400 to a URL whose path or query holds a NUL character (`%00`): no id or name
    contains one, and PostgreSQL refuses it in any text parameter, which would be a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"])
        ):
            await _send_json(send, 400, "the URL must not contain NUL (%00) characters")
            return
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="ownkey",
        version="0.1.0",
        description="Bring-your-own-key AI agent workflows on your own servers.",
    )
    install_error_handlers(app)
    v1 = APIRouter(prefix="/api/v1")
    # Routes are matched in order, at a cost per route: the hot path (runs) goes first.
    for router in (
        runs_router,
        keys_router,
        agents_router,
        workflows_router,
        prices_router,
        usage_router,
        users_router,
        tokens_router,
        audit_router,
        schedules_router,
        batches_router,
        budgets_router,
        webhooks_router,
        workers_router,
    ):
        v1.include_router(router)
    app.include_router(v1)
    registry, http_instruments = api_registry(settings)
    app.include_router(metrics_router(registry))
    install_web_ui(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    dataset_paths = ("/api/v1/batches", "/api/v1/batches/estimate")
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        path_limits=dict.fromkeys(dataset_paths, settings.max_dataset_bytes),
    )
    app.add_middleware(RefuseNulInUrl)
    # Outermost, so that it counts every answer, 413s and 400s included.
    app.add_middleware(HttpMetrics, instruments=http_instruments)
    return app
