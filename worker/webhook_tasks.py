"""Celery tasks for webhooks (filled in with the webhooks feature)."""

from __future__ import annotations

from scheduler.beat_schedule import WEBHOOKS_SWEEP_TASK
from worker.celery_app import get_celery

app = get_celery()


@app.task(name=WEBHOOKS_SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def webhooks_sweep() -> None:
    """Send the webhook deliveries whose retry is due."""
