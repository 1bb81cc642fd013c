"""Celery tasks for schedules: beat sends the tick, a worker fires what is due."""

from __future__ import annotations

from scheduler.beat_schedule import SCHEDULES_TICK_TASK
from scheduler.fire import fire_due_schedules
from worker.celery_app import get_celery

app = get_celery()


@app.task(name=SCHEDULES_TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def schedules_tick() -> int:
    """Fire the schedules whose time has come, each fire time exactly once."""
    return len(fire_due_schedules())
