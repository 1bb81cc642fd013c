"""What Celery beat triggers, and how often. Beat only enqueues: the work happens in
tasks on the workers."""

from __future__ import annotations

from typing import Any

from shared.config import Settings

RECONCILE_TASK = "ownkey.reconcile"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "reconcile-stranded-steps": {
            "task": RECONCILE_TASK,
            "schedule": settings.reconcile_interval_seconds,
            # A tick that could not run in time is replaced by the next one.
            "options": {"expires": settings.reconcile_interval_seconds},
        }
    }
