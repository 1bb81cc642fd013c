"""Celery tasks for webhooks: thin wrappers that unpack ids and call plain functions.

A message names a delivery and an attempt number, nothing else: the payload, the URL
and the secret stay in SQL, so neither Redis nor Flower ever holds them.
"""

from __future__ import annotations

from scheduler.beat_schedule import WEBHOOKS_SWEEP_TASK
from shared.webhook_store import Attempt
from shared.webhooks import DELIVER_TASK
from worker.celery_app import get_celery
from worker.webhook_delivery import deliver
from worker.webhook_sweep import sweep

app = get_celery()


@app.task(name=WEBHOOKS_SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def webhooks_sweep() -> None:
    """Send the webhook deliveries whose retry is due, and those nobody announced."""
    sweep()


@app.task(name=DELIVER_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def webhook_deliver(delivery_id: str, attempt: int) -> None:
    """Make one claimed attempt of a delivery. If this fails (the database is away), the
    claim runs out and the sweep makes another attempt."""
    deliver(Attempt(delivery_id, attempt))
