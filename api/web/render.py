"""Rendering pages: the template environment, the filters, and what every page gets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import Principal
from shared.config import get_settings
from shared.models import Role
from shared.pricing import nanos_to_usd

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def usd(value: float | int | None, *, nanos: bool = False) -> str:
    """$0.0123; costs under a cent keep four significant decimals; None is unknown."""
    if value is None:
        return "—"
    amount = nanos_to_usd(int(value)) if nanos else float(value)
    if amount is None:
        return "—"
    if amount == 0:
        return "$0"
    if abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.2f}" if abs(amount) >= 1 else f"${amount:.4f}"


def tokens(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


TEMPLATES.env.filters.update(
    usd=usd, usd_nanos=lambda v: usd(v, nanos=True), tokens=tokens, when=when
)
TEMPLATES.env.globals.update(duration=duration, Role=Role)


def flower_url() -> str:
    settings = get_settings()
    return settings.flower_url or f"http://127.0.0.1:{settings.flower_port}/"


def render(
    request: Request,
    template: str,
    who: Principal | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "csrf_token": who.csrf_token if who else None,
            "flower_url": flower_url(),
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
    )
