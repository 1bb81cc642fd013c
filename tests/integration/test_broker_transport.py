"""ownkey's Redis transport against a real Redis: one client per channel, and the
unacked bookkeeping (record on delivery, remove on ack) still right when many threads
ack at once, as the threads pool does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from kombu import Consumer, Queue
from kombu.message import Message

from shared.config import Settings
from shared.embedded_redis import EmbeddedRedis
from worker.broker_transport import TRANSPORT, Channel, transport_for
from worker.celery_app import STEP_TASK, make_celery

UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", TRANSPORT),
        ("redis://:secret@redis:6379/2", TRANSPORT),
        # kombu turns TLS on from the scheme's name: those keep kombu's transport.
        ("rediss://redis:6380/0", None),
        ("sentinel://redis:26379", None),
    ],
)
def test_only_plain_redis_urls_use_the_shared_client_transport(
    url: str, expected: str | None
) -> None:
    assert transport_for(url) == expected


def test_deliveries_and_acks_from_many_threads_share_one_client(
    redis_server: EmbeddedRedis,
) -> None:
    queue = "ownkey-transport-test"
    app = make_celery(Settings(redis_url=redis_server.url))
    for i in range(40):
        app.send_task(STEP_TASK, args=[f"{i:032x}"], queue=queue)
    received: list[Message] = []
    raw = redis.Redis.from_url(redis_server.url)
    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            assert isinstance(channel, Channel)
            first_client = channel._create_client()
            consumer = Consumer(
                channel,
                queues=[Queue(queue, routing_key=queue)],
                callbacks=[lambda _body, message: received.append(message)],
            )
            consumer.qos(prefetch_count=40)
            with consumer:
                while len(received) < 40:
                    connection.drain_events(timeout=5)
            assert raw.hlen(UNACKED) == 40  # each delivery recorded as unacked

            def ack(message: Message) -> Any:
                return message.ack()

            with ThreadPoolExecutor(max_workers=20) as pool:
                list(pool.map(ack, received))
            assert raw.hlen(UNACKED) == 0  # and every ack removed its record
            assert channel._create_client() is first_client
        args = sorted(message.decode()[0][0] for message in received)
        assert args == [f"{i:032x}" for i in range(40)]
    finally:
        raw.delete(queue, UNACKED, "unacked_index")
        raw.close()
