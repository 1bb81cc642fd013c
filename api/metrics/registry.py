"""The API process's metrics registry, built once per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from api.metrics.http import HttpInstruments, http_metrics
from api.metrics.state import StateCollector, queue_names
from shared.config import Settings

__all__ = ["api_registry"]


def api_registry(settings: Settings) -> tuple[CollectorRegistry, HttpInstruments]:
    """A registry per app (tests build several apps in one process); state is read from
    SQL and Redis only when scraped."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    registry.register(StateCollector(queue_names(settings)))
    return registry, http_metrics(registry)
