"""The web UI's routes, static files and error pages, attached to the API app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.web import agents, audit, batches, keys, login, runs, settings, usage, workflows
from api.web.render import render
from api.web.session import PageForbidden, SignInRequired

STATIC_DIR = Path(__file__).parent / "static"
# Pages load only what ownkey serves; nothing may frame them (clickjacking).
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


UNGUARDED_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/metrics")


class PageSecurityHeaders:
    """Security headers on the web UI's responses. Not on the JSON API, nor on FastAPI's
    /docs and /redoc, which load their scripts from a CDN."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNGUARDED_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


PAGE_ROUTERS = (
    login.router,
    runs.router,
    batches.router,
    workflows.router,
    agents.router,
    keys.router,
    usage.router,
    settings.router,
    audit.router,
)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)


async def _page_forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render(
        request, "error.html", exc.who, status_code=403, title="Not allowed", message=exc.message
    )


def install_web_ui(app: FastAPI) -> None:
    for router in PAGE_ROUTERS:
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/runs", status_code=303)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(PageForbidden, _page_forbidden)
    app.add_middleware(PageSecurityHeaders)
