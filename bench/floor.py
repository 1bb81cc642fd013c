"""The floors ownkey is measured against: what a user gets with no platform at all.

- A raw Celery app (``celery -A bench.floor worker``) whose one task makes the same HTTP
  call to fake-llm as an ownkey step (a thread-local ``httpx.Client``, one shared
  ``SSLContext``, like ownkey's worker) and inserts one row into the same database
  through the same engine settings (``shared.db.engine_for``). Delivery is configured
  as DESIGN.md requires of ownkey (JSON, ``acks_late``, ``reject_on_worker_lost``,
  prefetch 1); everything else is Celery's default, so no task events.
- A FastAPI endpoint (``python -m bench.floor api``) served by uvicorn with the options
  ``ownkey api`` uses, which inserts one row and enqueues one task.

The broker comes from Celery's own ``CELERY_BROKER_URL`` and the database from
``OWNKEY_DATABASE_URL``, both read on first use, never at import.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from celery import Celery
from pydantic import BaseModel, Field
from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, Text, insert

from shared.config import get_settings
from shared.db import engine_for
from worker.http_clients import thread_client

__all__ = [
    "FLOOR_QUEUE",
    "FLOOR_TASK",
    "app",
    "create_floor_api",
    "floor_rows",
    "floor_step",
    "make_floor_celery",
]

FLOOR_QUEUE = "bench-floor"
FLOOR_TASK = "bench.floor.step"
FLOOR_API_KEY = "sk-bench-floor-0000"

floor_rows = Table(
    "bench_floor_rows",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False, index=True),
    Column("item", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("output", Text),
    Column("done_at", Float, nullable=False),  # time.time() when the row was written
)


def make_floor_celery(broker: str | None = None) -> Celery:
    celery = Celery("bench-floor", broker=broker)
    celery.conf.update(
        task_default_queue=FLOOR_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    celery.task(name=FLOOR_TASK, ignore_result=True)(floor_step)
    return celery


def _engine() -> Engine:
    return engine_for(get_settings().resolved_database_url)


def floor_step(prev: str, batch: str, item: str, step: int, url: str, model: str) -> str:
    """One provider call and one row. In a chain, ``prev`` is the previous task's output,
    so the prompt grows exactly like an ownkey step that reads its predecessor's output."""
    prompt = f"run {item} s{step} {prev}" if prev else f"run {item} s{step}"
    # The same per-thread client ownkey's worker uses: the floor differs only in what
    # Celery and SQL work it does around the call.
    response = thread_client().post(
        url,
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {FLOOR_API_KEY}"},
        timeout=120,
    )
    response.raise_for_status()
    output = str(json.loads(response.content)["choices"][0]["message"]["content"])
    with _engine().begin() as connection:
        connection.execute(
            insert(floor_rows).values(
                batch=batch, item=item, step=step, output=output, done_at=time.time()
            )
        )
    return output


# `celery -A bench.floor worker` finds this; the broker URL is read when it connects.
app = make_floor_celery()


class FloorRun(BaseModel):
    """The same body as POST /api/v1/runs."""

    workflow: str = Field(min_length=1, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)


def create_floor_api() -> Any:
    """The submission floor: validate a body, insert one row, enqueue one task."""
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/floor/runs", status_code=202)
    def submit(body: FloorRun) -> dict[str, str]:
        run_id = uuid.uuid4().hex
        with _engine().begin() as connection:
            connection.execute(
                insert(floor_rows).values(
                    batch=f"submit-{body.workflow}",
                    item=run_id,
                    step=0,
                    output=json.dumps(body.input),
                    done_at=time.time(),
                )
            )
        app.send_task(FLOOR_TASK, args=[run_id], queue=FLOOR_QUEUE)
        return {"id": run_id, "status": "queued"}

    return api


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the submission floor")
    parser.add_argument("role", choices=["api"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    # The options `ownkey api` passes (shared/cli.py), with one process.
    uvicorn.run(
        "bench.floor:create_floor_api",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level=get_settings().log_level.lower(),
        access_log=False,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
