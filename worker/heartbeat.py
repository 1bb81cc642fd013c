"""A worker announces itself in Redis while it consumes (shared.worker_registry).

Started by Celery's `worker_ready` signal, once the worker consumes its queues; a daemon
thread refreshes the entry every few seconds, and `worker_shutdown` removes it. Celery
loads this module with the tasks (worker.celery_app's `include`), so the API, which
only sends messages, never connects these signals to anything that runs.

A Redis error in a heartbeat is logged and the next one tries again: the entry lives
three heartbeats, so one missed beat does not make the worker look dead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from celery import signals

from shared import worker_registry
from shared.config import get_settings
from shared.worker_registry import WorkerInfo

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Heartbeat:
    """Keeps one worker's registry entry fresh until stopped."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        node: str,
        queues: Callable[[], Iterable[str]],
        concurrency: int,
        interval: float = worker_registry.HEARTBEAT_SECONDS,
    ) -> None:
        self._client = client
        self._node = node
        # A callable: a worker can be told to consume another queue while it runs.
        self._queues = queues
        self._concurrency = concurrency
        self._interval = interval
        self._started_at = _now()
        self._last_ok: float | None = None  # time.monotonic() of the last registered beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ownkey-heartbeat", daemon=True)

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            node=self._node,
            host=socket.gethostname(),
            queues=tuple(sorted(self._queues())),
            concurrency=self._concurrency,
            pid=os.getpid(),
            started_at=self._started_at,
            seen_at=_now(),
        )

    def beat(self) -> None:
        try:
            worker_registry.register(self._client, self.info())
            self._last_ok = time.monotonic()
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", type(exc).__name__)

    def seconds_since_beat(self) -> float | None:
        """Since this worker last announced itself in Redis; None: never."""
        return None if self._last_ok is None else time.monotonic() - self._last_ok

    def start(self) -> None:
        self.beat()  # registered before the thread's first wait
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            worker_registry.unregister(self._client, self._node)
        except redis.RedisError as exc:
            # Redis is away: nothing to do, the entry expires by itself.
            log.info(
                "could not remove this worker from the registry (%s); its entry expires in %d s",
                type(exc).__name__,
                worker_registry.TTL_SECONDS,
            )
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat()


_current: Heartbeat | None = None


def _start(sender: Any, **_: Any) -> None:
    """`sender` is the worker's consumer: its node name, app and controller."""
    global _current
    app = sender.app
    _current = Heartbeat(
        redis.Redis.from_url(get_settings().redis_url),
        node=sender.hostname,
        queues=lambda: list(app.amqp.queues.consume_from or ()),
        concurrency=int(getattr(sender.controller, "concurrency", 0) or 0),
    )
    _current.start()
    log.info("registered as a live worker (node %s)", sender.hostname)


def health() -> tuple[bool, str]:
    """Whether this worker consumes and is seen by the cluster: its heartbeat reached
    Redis within the registry's time to live. For a container healthcheck or probe."""
    if _current is None:
        return False, "not consuming yet"
    age = _current.seconds_since_beat()
    if age is None or age > worker_registry.TTL_SECONDS:
        return False, "no heartbeat reached Redis lately"
    return True, f"ok: last heartbeat {age:.0f} s ago"


def _stop(**_: Any) -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None


signals.worker_ready.connect(_start, weak=False)
signals.worker_shutdown.connect(_stop, weak=False)
