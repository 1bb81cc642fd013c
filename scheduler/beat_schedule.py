"""What Celery beat triggers, and how often. Beat only enqueues: the work happens in
tasks on the workers."""

from __future__ import annotations

from typing import Any

from shared.config import Settings

RECONCILE_TASK = "ownkey.reconcile"
SCHEDULES_TICK_TASK = "ownkey.schedules_tick"  # scheduler/tasks.py
WEBHOOKS_SWEEP_TASK = "ownkey.webhooks_sweep"  # worker/webhook_tasks.py
BATCHES_SWEEP_TASK = "ownkey.batches_sweep"  # worker/batch_tasks.py
CONTROL_TASKS = (RECONCILE_TASK, SCHEDULES_TICK_TASK, WEBHOOKS_SWEEP_TASK, BATCHES_SWEEP_TASK)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "reconcile-stranded-steps": {
            "task": RECONCILE_TASK,
            "schedule": settings.reconcile_interval_seconds,
            # A tick that could not run in time is replaced by the next one.
            "options": {"expires": settings.reconcile_interval_seconds},
        },
        # Creates the runs of schedules whose fire time has come. Every beat may send it;
        # SQL makes each fire time happen once.
        "fire-due-schedules": {
            "task": SCHEDULES_TICK_TASK,
            "schedule": settings.schedule_tick_seconds,
            "options": {"expires": settings.schedule_tick_seconds},
        },
        # Sends webhook deliveries whose retry is due (first attempts go out at once).
        "retry-webhook-deliveries": {
            "task": WEBHOOKS_SWEEP_TASK,
            "schedule": settings.webhook_sweep_seconds,
            "options": {"expires": settings.webhook_sweep_seconds},
        },
        # Releases batch items into free slots, in case a run's close was not heard.
        "release-batch-items": {
            "task": BATCHES_SWEEP_TASK,
            "schedule": settings.reconcile_interval_seconds,
            "options": {"expires": settings.reconcile_interval_seconds},
        },
    }
