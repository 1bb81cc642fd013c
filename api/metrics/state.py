"""Runs and steps by status (SQL) and broker queue depths (Redis), read at scrape time.

One GROUP BY per table and one pipelined round of LLEN per scrape at most every
`CACHE_SECONDS`: Prometheus servers (often two, for redundancy) scraping every few
seconds cost the database almost nothing. Every status is exported, 0 when absent, so a
dashboard's series do not vanish when a status empties.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from shared.config import Settings, get_settings
from shared.db import get_engine
from shared.models import Agent, ProviderKey, Run, RunStatus, StepRun, StepStatus
from shared.queues import CONTROL_QUEUE, DEFAULT_QUEUE, parse_queue_list

__all__ = ["CACHE_SECONDS", "StateCollector", "queue_names"]

CACHE_SECONDS = 5.0
log = logging.getLogger(__name__)


def queue_names(settings: Settings) -> list[str]:
    """The broker queues whose depth is always exported: the default and control queues
    and those workers are configured to consume; `routed_queues` adds the others."""
    configured = parse_queue_list(settings.worker_queues)
    return list(dict.fromkeys([DEFAULT_QUEUE, CONTROL_QUEUE, *configured]))


def routed_queues() -> list[str]:
    """The queues agents and keys route steps to (shared.queues)."""
    agents = Agent.__table__.c  # type: ignore[attr-defined]
    keys = ProviderKey.__table__.c  # type: ignore[attr-defined]
    with get_engine().connect() as db:
        rows = db.execute(
            select(agents.queue)
            .where(agents.queue.is_not(None))
            .union(select(keys.queue).where(keys.queue.is_not(None)))
        ).scalars()
        return sorted(str(q) for q in rows)


def count_by_status(table: Any) -> dict[str, int]:
    with get_engine().connect() as db:
        status = table.c.status
        rows = db.execute(select(status, func.count()).group_by(status)).all()
    return {str(status): int(count) for status, count in rows}


@lru_cache(maxsize=1)
def _broker() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=2)


def queue_depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))


@dataclass
class _Cached:
    """A value recomputed at most every `ttl` seconds; a failed read is not cached."""

    read: Callable[[], dict[str, int]]
    ttl: float = CACHE_SECONDS
    _value: dict[str, int] | None = None
    _at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> dict[str, int]:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= self.ttl:
                self._value = self.read()
                self._at = now
            return self._value


def _families(
    name: str, doc: str, label: str, known: Iterable[str], counts: dict[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in dict.fromkeys([*known, *counts]):
        family.add_metric([value], counts.get(value, 0))
    return family


class StateCollector(Collector):
    """ownkey_runs{status}, ownkey_steps{status}, ownkey_queue_depth{queue}."""

    def __init__(
        self,
        queues: Sequence[str],
        *,
        broker: Callable[[], redis.Redis] = _broker,
        ttl: float = CACHE_SECONDS,
    ) -> None:
        self.queues = list(queues)
        self._runs = _Cached(lambda: count_by_status(Run.__table__), ttl)  # type: ignore[attr-defined]
        self._steps = _Cached(lambda: count_by_status(StepRun.__table__), ttl)  # type: ignore[attr-defined]
        self._depths = _Cached(
            lambda: queue_depths(broker(), list(dict.fromkeys([*self.queues, *routed_queues()]))),
            ttl,
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Names only: the registry must not read SQL when the collector is registered."""
        yield GaugeMetricFamily("ownkey_runs", "Runs by status.", labels=["status"])
        yield GaugeMetricFamily("ownkey_steps", "Steps by status.", labels=["status"])
        yield GaugeMetricFamily(
            "ownkey_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _families(
            "ownkey_runs",
            "Runs by status.",
            "status",
            [str(s) for s in RunStatus],
            self._runs.get(),
        )
        yield _families(
            "ownkey_steps",
            "Steps by status.",
            "status",
            [str(s) for s in StepStatus],
            self._steps.get(),
        )
        try:
            depths = self._depths.get()
        except redis.RedisError as exc:  # the SQL figures are still worth serving
            log.warning("queue depths unavailable (%s)", type(exc).__name__)
            return
        yield _families(
            "ownkey_queue_depth",
            "Messages waiting in a broker queue.",
            "queue",
            self.queues,
            depths,
        )
