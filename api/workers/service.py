"""The live workers, as the API sees them: read from Redis (shared.worker_registry) at
most once every `CACHE_SECONDS` per API process, so a run page polling every second
costs no Redis round trip per poll. A worker that just started or stopped shows within
that much more time than its heartbeat already takes.

When Redis does not answer, liveness is unknown (None): a step is then not reported as
waiting for a worker that may well be there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from shared.config import get_settings
from shared.worker_registry import WorkerInfo, live_workers

log = logging.getLogger(__name__)
CACHE_SECONDS = 3.0


def read_live_workers() -> list[WorkerInfo]:
    url = get_settings().redis_url
    if not url:
        raise redis.ConnectionError("OWNKEY_REDIS_URL is not set")
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return live_workers(client)
    finally:
        client.close()


class LivenessCache:
    """The last answer of `read`, kept `ttl` seconds; None while Redis is unreachable."""

    def __init__(
        self,
        read: Callable[[], list[WorkerInfo]] = read_live_workers,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._value: list[WorkerInfo] | None = None
        self._expires = float("-inf")

    def workers(self) -> list[WorkerInfo] | None:
        with self._lock:
            if self._clock() >= self._expires:
                try:
                    self._value = self._read()
                except redis.RedisError as exc:
                    log.warning("could not read the live workers: %s", type(exc).__name__)
                    self._value = None
                self._expires = self._clock() + self._ttl
            return self._value

    def queues(self) -> set[str] | None:
        workers = self.workers()
        return None if workers is None else {q for w in workers for q in w.queues}

    def clear(self) -> None:
        with self._lock:
            self._expires = float("-inf")


liveness = LivenessCache()


def waiting_for(queue: str, live_queues: set[str] | None) -> str | None:
    """Why a queued step does not start, when the reason is that nobody consumes its
    queue; None when a live worker does (or liveness is unknown)."""
    if live_queues is None or queue in live_queues:
        return None
    return (
        f"no live worker consumes queue '{queue}': start one with `ownkey worker --queues {queue}`"
    )
