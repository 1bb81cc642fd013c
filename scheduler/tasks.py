"""Celery tasks for schedules (filled in with the schedules feature)."""

from __future__ import annotations

from scheduler.beat_schedule import SCHEDULES_TICK_TASK
from worker.celery_app import get_celery

app = get_celery()


@app.task(name=SCHEDULES_TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def schedules_tick() -> None:
    """Fire the schedules whose time has come, each fire time exactly once."""
