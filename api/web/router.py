"""The web UI's routes, static files and error pages, attached to the API app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.web import agents, audit, keys, login, runs, settings, usage, workflows
from api.web.render import render
from api.web.session import PageForbidden, SignInRequired

STATIC_DIR = Path(__file__).parent / "static"
PAGE_ROUTERS = (
    login.router,
    runs.router,
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
        request, "error.html", None, status_code=403, title="Not allowed", message=exc.message
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
