"""The reconciler: a beat task that re-enqueues steps the broker lost.

A step is stranded when it has been queued in SQL for longer than
`requeue_after_seconds` (its message vanished, e.g. a Redis restart without
persistence, or the enqueue after commit failed), or when it is running under a lease
that expired (its worker died). Re-enqueueing is always safe: the claim is a
conditional update, so a duplicate message finds nothing to do.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, or_
from sqlmodel import col, select

from shared.config import get_settings
from shared.db import read_session
from shared.models import StepRun, StepStatus, utcnow
from worker.dispatch import enqueue_steps

log = logging.getLogger(__name__)
BATCH = 1000


def stranded_step_ids(*, requeue_after_seconds: float) -> list[str]:
    now = utcnow()
    stale = now - timedelta(seconds=requeue_after_seconds)
    with read_session() as session:
        return list(
            session.exec(
                select(StepRun.id)
                .where(
                    or_(
                        and_(
                            col(StepRun.status) == StepStatus.queued,
                            col(StepRun.queued_at) < stale,
                            or_(col(StepRun.not_before).is_(None), col(StepRun.not_before) < stale),
                        ),
                        and_(
                            col(StepRun.status) == StepStatus.running,
                            col(StepRun.lease_expires_at) < now,
                        ),
                    )
                )
                .limit(BATCH)
            ).all()
        )


def reconcile() -> int:
    settings = get_settings()
    ids = stranded_step_ids(requeue_after_seconds=settings.requeue_after_seconds)
    if ids:
        log.info("re-enqueueing %d stranded steps", len(ids))
    return enqueue_steps(ids)
