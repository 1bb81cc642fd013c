"""Worker liveness in Redis (fakeredis): registering, expiry, the heartbeat thread, the
API's short cache, and the "no live worker" message."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis
from pydantic import SecretStr

from api.workers.service import LivenessCache, waiting_for
from shared import worker_registry
from shared.worker_registry import (
    TTL_SECONDS,
    WorkerInfo,
    live_queues,
    live_workers,
    register,
    unregister,
)
from worker import heartbeat
from worker.heartbeat import Heartbeat
from worker.metrics_server import metrics_app


def info(node: str, *queues: str) -> WorkerInfo:
    return WorkerInfo(
        node=node,
        host="box",
        queues=tuple(queues),
        concurrency=8,
        pid=1,
        started_at="2030-01-01T00:00:00+00:00",
        seen_at="2030-01-01T00:00:00+00:00",
    )


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_registered_workers_are_live_until_their_entry_goes(client: fakeredis.FakeRedis) -> None:
    register(client, info("gpu@box", "local-gpu", "ownkey.control"))
    register(client, info("cpu@box", "ownkey", "ownkey.control"))
    assert [w.node for w in live_workers(client)] == ["cpu@box", "gpu@box"]
    assert live_queues(client) == {"local-gpu", "ownkey", "ownkey.control"}
    ttl = client.ttl(worker_registry.KEY_PREFIX + "gpu@box")
    assert 0 < ttl <= worker_registry.TTL_SECONDS
    # A worker that died stops refreshing: its entry expires (deleted here) and it is
    # dropped, from the answer and from the index.
    client.delete(worker_registry.KEY_PREFIX + "gpu@box")
    assert live_queues(client) == {"ownkey", "ownkey.control"}
    assert client.smembers(worker_registry.INDEX_KEY) == {b"cpu@box"}
    unregister(client, "cpu@box")
    assert live_workers(client) == []


def test_an_unreadable_entry_is_not_a_live_worker(client: fakeredis.FakeRedis) -> None:
    client.set(worker_registry.KEY_PREFIX + "odd", "not json")
    client.sadd(worker_registry.INDEX_KEY, "odd")
    register(client, info("ok@box", "ownkey"))
    assert [w.node for w in live_workers(client)] == ["ok@box"]


def test_the_heartbeat_registers_refreshes_and_unregisters(client: fakeredis.FakeRedis) -> None:
    queues = ["local-gpu", "ownkey.control"]
    beat = Heartbeat(client, node="gpu@box", queues=lambda: queues, concurrency=4, interval=60)
    beat.start()
    try:
        (live,) = live_workers(client)
        assert (live.node, live.queues, live.concurrency) == (
            "gpu@box",
            ("local-gpu", "ownkey.control"),
            4,
        )
        queues.append("extra")  # a queue added while the worker runs
        beat.beat()
        assert "extra" in live_queues(client)
    finally:
        beat.stop()
    assert live_workers(client) == []


def test_a_failed_heartbeat_is_survived() -> None:
    broken = fakeredis.FakeRedis()
    broken.connected = False  # every command raises ConnectionError
    beat = Heartbeat(broken, node="n", queues=list, concurrency=1, interval=60)
    beat.beat()  # logged, not raised


class Reads:
    def __init__(self, answer: list[WorkerInfo] | Exception) -> None:
        self.answer = answer
        self.count = 0

    def __call__(self) -> list[WorkerInfo]:
        self.count += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_api_reads_liveness_at_most_once_per_ttl() -> None:
    now = [100.0]
    reads = Reads([info("gpu@box", "local-gpu")])
    cache = LivenessCache(reads, ttl=3, clock=lambda: now[0])
    assert cache.queues() == {"local-gpu"}
    now[0] += 2.9
    assert cache.queues() == {"local-gpu"} and reads.count == 1
    now[0] += 0.2
    reads.answer = []
    assert cache.queues() == set() and reads.count == 2


def test_liveness_is_unknown_while_redis_is_away() -> None:
    cache = LivenessCache(Reads(redis.ConnectionError("down")), ttl=3, clock=lambda: 0.0)
    assert cache.workers() is None and cache.queues() is None


def test_a_step_waits_for_a_worker_only_on_a_queue_nobody_consumes() -> None:
    message = waiting_for("local-gpu", {"ownkey", "ownkey.control"})
    assert message is not None
    assert message.startswith("no live worker consumes queue 'local-gpu'")
    assert "ownkey worker --queues local-gpu" in message
    assert waiting_for("local-gpu", {"local-gpu"}) is None
    assert waiting_for("local-gpu", None) is None  # unknown: say nothing rather than wrong


def _get(path: str) -> tuple[str, bytes]:
    app = metrics_app(SecretStr("scrape-token"))
    answer: list[str] = []
    body = b"".join(app({"PATH_INFO": path}, lambda status, headers: answer.append(status)))
    return answer[0], body


def test_the_worker_health_follows_its_heartbeat(
    client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _get("/health")[0].startswith("503")  # not consuming yet
    beat = Heartbeat(client, node="n@box", queues=list, concurrency=1, interval=60)
    monkeypatch.setattr(heartbeat, "_current", beat)
    assert _get("/health")[0].startswith("503")  # never reached Redis
    beat.beat()
    status, body = _get("/health")
    assert status.startswith("200") and body.startswith(b"ok")  # open: no token needed
    monkeypatch.setattr(beat, "_last_ok", time.monotonic() - TTL_SECONDS - 1)
    assert _get("/health")[0].startswith("503")  # its registry entry has expired
    assert _get("/metrics")[0].startswith("401")  # metrics keep their token
