"""Which workers are alive, and which queues they consume, as Redis knows it.

Each worker process writes one key, `ownkey:worker:<node name>`, holding its node name,
host, queues and concurrency, with a TTL of `TTL_SECONDS`; a heartbeat rewrites it
every `HEARTBEAT_SECONDS` (worker.heartbeat). A worker that stops cleanly deletes its
key; one that dies stops refreshing it, and it expires. A set, `ownkey:workers`, names
the registered nodes, so reading the live ones is a set read and one MGET, never a scan
of the keyspace (Redis is also the broker and the rate limiter).

The API asks "is any live worker consuming queue q?" to tell a user why a step waits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

__all__ = [
    "HEARTBEAT_SECONDS",
    "TTL_SECONDS",
    "WorkerInfo",
    "live_queues",
    "live_workers",
    "register",
    "unregister",
]

TTL_SECONDS = 30
HEARTBEAT_SECONDS = 10
KEY_PREFIX = "ownkey:worker:"
INDEX_KEY = "ownkey:workers"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    node: str  # Celery's node name, e.g. "ownkey@gpu-box"
    host: str
    queues: tuple[str, ...]
    concurrency: int
    pid: int
    started_at: str  # ISO 8601, UTC
    seen_at: str  # the last heartbeat, ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo | None:
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(**{**data, "queues": tuple(data["queues"])})
        except (ValueError, TypeError, KeyError):
            return None  # written by another version: not this one's to read


def register(client: redis.Redis, info: WorkerInfo, *, ttl: int = TTL_SECONDS) -> None:
    """Write (or refresh) a worker's entry; it lives `ttl` seconds unless refreshed."""
    with client.pipeline(transaction=False) as pipe:
        pipe.set(KEY_PREFIX + info.node, info.to_json(), ex=ttl)
        pipe.sadd(INDEX_KEY, info.node)
        pipe.execute()


def unregister(client: redis.Redis, node: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(KEY_PREFIX + node)
        pipe.srem(INDEX_KEY, node)
        pipe.execute()


def live_workers(client: redis.Redis) -> list[WorkerInfo]:
    """The workers whose entry has not expired, by node name. Names whose entry expired
    (a worker that died) are dropped from the index on the way."""
    nodes = sorted(
        n.decode() if isinstance(n, bytes) else str(n) for n in client.smembers(INDEX_KEY)
    )
    if not nodes:
        return []
    values = client.mget([KEY_PREFIX + node for node in nodes])
    live: list[WorkerInfo] = []
    expired: list[str] = []
    for node, raw in zip(nodes, values, strict=True):
        info = None if raw is None else WorkerInfo.from_json(raw)
        if info is None:
            expired.append(node)
        else:
            live.append(info)
    if expired:
        # A worker refreshing right now re-adds its name with its next heartbeat.
        client.srem(INDEX_KEY, *expired)
    return live


def live_queues(client: redis.Redis) -> set[str]:
    """Every queue at least one live worker consumes."""
    return {queue for info in live_workers(client) for queue in info.queues}
