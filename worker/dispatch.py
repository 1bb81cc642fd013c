"""Sending step ids to the broker. Called only after the transaction that made the
steps due has committed, so a worker never receives a step it cannot see yet.

A `label` (see worker.task_labels) becomes the message's `shadow` name: Flower and the
worker's log show `ownkey.step triage/extract (extractor)` while the task that runs is
still `ownkey.step`, with the step id as its only argument."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from worker.celery_app import DEFAULT_QUEUE, STEP_TASK, get_celery

log = logging.getLogger(__name__)


def enqueue_step(
    step_id: str,
    *,
    queue: str = DEFAULT_QUEUE,
    countdown: float | None = None,
    label: str | None = None,
) -> None:
    get_celery().send_task(
        STEP_TASK,
        args=[step_id],
        queue=queue,
        countdown=countdown,
        shadow=f"{STEP_TASK} {label}" if label else None,
    )


def enqueue_step_later(step_id: str, *, countdown: float, label: str | None = None) -> None:
    """Like enqueue_step, but a broker failure is logged, not raised: the step is
    queued in SQL and the reconciler sends it once the broker is back."""
    try:
        enqueue_step(step_id, countdown=countdown, label=label)
    except Exception as exc:  # kombu raises many types for a broker outage
        log.warning("could not enqueue step %s: %s", step_id, type(exc).__name__)


def enqueue_steps(
    step_ids: Iterable[str],
    *,
    queue: str = DEFAULT_QUEUE,
    labels: Mapping[str, str] | None = None,
) -> int:
    """Enqueue each id (named by its entry in `labels`, if any); a broker failure is
    logged, not raised: the steps are queued in SQL and the reconciler re-enqueues them
    once the broker is back."""
    sent = 0
    for step_id in step_ids:
        try:
            enqueue_step(step_id, queue=queue, label=labels.get(step_id) if labels else None)
            sent += 1
        except Exception as exc:  # kombu raises many types for a broker outage
            log.warning("could not enqueue step %s: %s", step_id, type(exc).__name__)
    return sent
