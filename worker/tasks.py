"""Celery tasks: thin wrappers that unpack ids and call plain functions."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from worker.celery_app import RECONCILE_TASK, STEP_TASK, get_celery
from worker.execute import execute_step
from worker.reconcile import reconcile

app = get_celery()


# A database outage before the claim leaves the step untouched: try the message again.
@app.task(  # type: ignore[untyped-decorator]
    name=STEP_TASK,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=30,
)
def step(step_id: str) -> None:
    execute_step(step_id)


@app.task(name=RECONCILE_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile_steps() -> int:
    return reconcile()
