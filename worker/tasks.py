"""Celery tasks: thin wrappers that unpack ids and call plain functions."""

from __future__ import annotations

from worker.celery_app import RECONCILE_TASK, STEP_TASK, get_celery
from worker.execute import execute_step
from worker.reconcile import reconcile

app = get_celery()


@app.task(name=STEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def step(step_id: str) -> None:
    execute_step(step_id)


@app.task(name=RECONCILE_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile_steps() -> int:
    return reconcile()
