"""The worker's Prometheus metrics, counted in the process where the step runs.

Each function is a few dictionary lookups and additions in memory: no SQL, no Redis.
Labels are provider and model names, queue names, HTTP status codes and step statuses:
never a prompt, an output, an id or a secret. Label children are cached per label
tuple (prometheus_client's own `labels()` takes a lock and builds a key each time).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

__all__ = [
    "REGISTRY",
    "observe_call",
    "observe_queue_wait",
    "observe_rate_limit_wait",
    "observe_step_finished",
]

# A `*_created` series per label set doubles the series count for nothing a dashboard uses.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# LLM calls take from a tenth of a second (a cached local model) to minutes.
CALL_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
)
QUEUE_WAIT_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
)

PROVIDER_CALLS = Counter(
    "ownkey_provider_calls",
    "Calls to LLM providers by HTTP status code ('error': timeout or connection failure).",
    ["provider", "model", "status_code"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "ownkey_tokens",
    "Tokens the providers reported, by kind (input, output, cached).",
    ["provider", "model", "kind"],
    registry=REGISTRY,
)
COST = Counter(
    "ownkey_cost_usd",
    "Cost of succeeded calls at list price, in USD (calls without a known price add 0).",
    ["provider", "model"],
    registry=REGISTRY,
)
CALL_DURATION = Histogram(
    "ownkey_step_duration_seconds",
    "Latency of successful provider calls.",
    ["provider", "model"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "ownkey_step_queue_wait_seconds",
    "From when a step became due to when a worker claimed it.",
    ["queue"],
    buckets=QUEUE_WAIT_BUCKETS,
    registry=REGISTRY,
)
STEPS_FINISHED = Counter(
    "ownkey_steps_finished",
    "Steps this worker finished, by final status.",
    ["status"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "ownkey_rate_limit_waits",
    "Steps handed back because their key's rpm/tpm window was full or the provider "
    "asked to wait (429).",
    ["provider"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "ownkey_rate_limit_wait_seconds",
    "Seconds of those waits.",
    ["provider"],
    registry=REGISTRY,
)


def _children(metric: Any) -> Callable[..., Any]:
    @lru_cache(maxsize=4096)
    def child(*labels: str) -> Any:
        return metric.labels(*labels)

    return child


_calls = _children(PROVIDER_CALLS)
_tokens = _children(TOKENS)
_cost = _children(COST)
_duration = _children(CALL_DURATION)
_queue_wait = _children(QUEUE_WAIT)
_finished = _children(STEPS_FINISHED)
_waits = _children(RATE_LIMIT_WAITS)
_wait_seconds = _children(RATE_LIMIT_WAIT_SECONDS)


def observe_call(
    provider: str,
    model: str,
    *,
    status_code: int | None,
    seconds: float | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cached_tokens: int | None = None,
    cost_usd: float | None = None,
) -> None:
    """One provider call. `status_code` None means no HTTP answer (timeout, connection)."""
    _calls(provider, model, "error" if status_code is None else str(status_code)).inc()
    if seconds is not None:
        _duration(provider, model).observe(seconds)
    for kind, count in (
        ("input", input_tokens),
        ("output", output_tokens),
        ("cached", cached_tokens),
    ):
        if count:
            _tokens(provider, model, kind).inc(count)
    if cost_usd:
        _cost(provider, model).inc(cost_usd)


def observe_queue_wait(queue: str, seconds: float) -> None:
    _queue_wait(queue).observe(max(0.0, seconds))


def observe_step_finished(status: str) -> None:
    _finished(status).inc()


def observe_rate_limit_wait(provider: str, seconds: float) -> None:
    _waits(provider).inc()
    _wait_seconds(provider).inc(seconds)
