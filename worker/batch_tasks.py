"""Celery tasks for batches."""

from __future__ import annotations

from scheduler.beat_schedule import BATCHES_SWEEP_TASK
from worker import batch_release
from worker.celery_app import get_celery

app = get_celery()


@app.task(name=BATCHES_SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def batches_sweep() -> int:
    """Release waiting items of running batches into free slots."""
    return batch_release.sweep()
