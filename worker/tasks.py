"""Celery tasks: thin wrappers that unpack ids and call plain functions."""

from __future__ import annotations

from celery import Task

from shared import webhooks
from worker import batch_release
from worker.celery_app import RECONCILE_TASK, STEP_TASK, get_celery
from worker.db_retry import TRANSIENT_DB_ERRORS
from worker.execute import execute_step
from worker.reconcile import reconcile
from worker.run_events import RUN_CLOSED_TASK

app = get_celery()


# A database outage before the claim leaves the step untouched: try the message again.
@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=STEP_TASK,
    ignore_result=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=30,
)
def step(self: Task, step_id: str) -> None:
    execute_step(step_id, node=self.request.hostname)


@app.task(name=RECONCILE_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def reconcile_steps() -> int:
    return reconcile()


@app.task(name=RUN_CLOSED_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def run_closed(run_id: str) -> None:
    """A run closed: its batch moves on, its webhooks are queued."""
    batch_release.on_run_closed(run_id)
    webhooks.on_run_closed(run_id)
