"""ownkey_http_requests_total and ownkey_http_request_duration_seconds, labelled with
the route's template (`/api/v1/runs/{run_id}`), never the raw path: ids in the label
would make a new series per run. A request no route matched is labelled "<unmatched>"."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpInstruments", "HttpMetrics", "http_metrics"]

UNMATCHED = "<unmatched>"
# Most answers take milliseconds; batch uploads and exports take seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        requests = Counter(
            "ownkey_http_requests",
            "HTTP requests the API answered, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        duration = Histogram(
            "ownkey_http_request_duration_seconds",
            "Time the API took to answer, by route template.",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.requests: Callable[..., Any] = lru_cache(maxsize=2048)(requests.labels)
        self.duration: Callable[..., Any] = lru_cache(maxsize=1024)(duration.labels)


def _route_of(scope: Scope) -> str:
    """The matched route's template, with the prefixes of the routers it was included
    under. FastAPI puts the route itself in `scope["route"]`, whose `path` may lack
    those prefixes (it does from FastAPI 0.13x): they are the leading segments of the
    request's path that the template does not cover. ownkey's prefixes are constants
    (/api/v1), so no id can enter the label that way."""
    route = scope.get("route")
    template = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    if not isinstance(template, str):
        return UNMATCHED
    if isinstance(route, Mount) or ":path}" in template:
        return template  # its tail is free-form: only the mount point is a template
    covered = template.rstrip("/").count("/")
    segments = scope["path"].rstrip("/").split("/")
    return "/".join(segments[: len(segments) - covered]) + template


class HttpMetrics:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed answers)."""

    def __init__(self, app: ASGIApp, instruments: HttpInstruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes everything is answered 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            # Starlette's router writes the matched route into the shared scope.
            route, method = _route_of(scope), scope["method"]
            self.instruments.requests(method, route, str(status)).inc()
            self.instruments.duration(method, route).observe(time.perf_counter() - started)


def http_metrics(registry: CollectorRegistry) -> HttpInstruments:
    return HttpInstruments(registry)
