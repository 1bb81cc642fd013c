"""The broker scan reads step ids from real Celery messages in a Redis list."""

from __future__ import annotations

from pathlib import Path

import redis
from celery import Celery

from shared.embedded_redis import start_redis
from worker.broker_scan import step_ids_in_broker
from worker.celery_app import STEP_TASK


def test_finds_the_step_ids_of_waiting_messages_only(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        app = Celery(broker=server.url)
        app.send_task(STEP_TASK, args=["a" * 32], queue="ownkey")
        app.send_task(STEP_TASK, args=["b" * 32], queue="other")
        app.send_task("something.else", args=["c" * 32], queue="ownkey")
        client = redis.Redis.from_url(server.url)
        assert step_ids_in_broker(client, ["ownkey"]) == {"a" * 32}
        assert step_ids_in_broker(client, ["ownkey", "other"]) == {"a" * 32, "b" * 32}
        client.close()
    finally:
        server.stop()
