"""Sending step ids to the broker. Called only after the transaction that made the
steps due has committed, so a worker never receives a step it cannot see yet.

Each step goes to the queue stored on it when its run was planned (shared.queues), so
only the workers that consume that queue receive it. Its label (shared.task_labels)
becomes the message's `shadow` name: Flower and the worker's log show
`ownkey.step triage/extract (extractor)` while the task that runs is still
`ownkey.step`, with the step id as its only argument."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shared.queues import QueuedStep
from worker.celery_app import STEP_TASK, get_celery

log = logging.getLogger(__name__)


def enqueue_step(step: QueuedStep, *, countdown: float | None = None) -> None:
    get_celery().send_task(
        STEP_TASK,
        args=[step.step_id],
        queue=step.queue,
        countdown=countdown,
        shadow=f"{STEP_TASK} {step.label}" if step.label else None,
    )


def enqueue_step_later(step: QueuedStep, *, countdown: float) -> None:
    """Like enqueue_step, but a broker failure is logged, not raised: the step is
    queued in SQL and the reconciler sends it once the broker is back."""
    try:
        enqueue_step(step, countdown=countdown)
    except Exception as exc:  # kombu raises many types for a broker outage
        log.warning("could not enqueue step %s: %s", step.step_id, type(exc).__name__)


def enqueue_steps(steps: Iterable[QueuedStep]) -> int:
    """Enqueue each step on its queue; a broker failure is logged, not raised: the steps
    are queued in SQL and the reconciler re-enqueues them once the broker is back."""
    sent = 0
    for step in steps:
        try:
            enqueue_step(step)
            sent += 1
        except Exception as exc:  # kombu raises many types for a broker outage
            log.warning("could not enqueue step %s: %s", step.step_id, type(exc).__name__)
    return sent
