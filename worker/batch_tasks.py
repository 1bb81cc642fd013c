"""Celery tasks for batches (filled in with the batches feature)."""

from __future__ import annotations

from scheduler.beat_schedule import BATCHES_SWEEP_TASK
from worker.celery_app import get_celery

app = get_celery()


@app.task(name=BATCHES_SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def batches_sweep() -> None:
    """Release waiting items of running batches into free slots."""
