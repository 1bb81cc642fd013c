"""GET /metrics: Prometheus's text format, outside /api/v1 and without a user login.

Open unless OWNKEY_METRICS_TOKEN is set (then `Authorization: Bearer <token>`): keep it
off the public internet either way, as it tells how busy the installation is."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.config import get_settings
from shared.metrics_auth import metrics_allowed

__all__ = ["metrics_router"]


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not metrics_allowed(get_settings().metrics_token, request.headers.get("authorization")):
            return Response(
                '{"detail": "a valid bearer token is required"}',
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
