"""After the commit that closed a run: its batch releases the next items (and may
finish), and the webhooks of its workflow are called.

A run outside any batch, of a workflow without webhooks, costs nothing here: no message
and no query (the check uses the claim and a per-process cache).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from shared import webhooks
from shared.db import read_session
from shared.models import Run
from worker.celery_app import get_celery

log = logging.getLogger(__name__)

RUN_CLOSED_TASK = "ownkey.run_closed"


def needs_follow_up(*, batch_id: str | None, workflow_id: str) -> bool:
    return batch_id is not None or webhooks.workflow_has_subscribers(workflow_id)


def run_closed(run_id: str, *, batch_id: str | None, workflow_id: str) -> None:
    """Hand the closed run to a worker for its follow-up, if it has one. A broker failure
    is logged, not raised: the batch sweep and webhook sweep catch up."""
    if not needs_follow_up(batch_id=batch_id, workflow_id=workflow_id):
        return
    try:
        get_celery().send_task(RUN_CLOSED_TASK, args=[run_id])
    except Exception as exc:  # kombu raises many types for a broker outage
        log.warning("could not announce that run %s closed: %s", run_id, type(exc).__name__)


def announce_closed(run_id: str) -> None:
    """`run_closed` for callers without a claim at hand (cancel, the reconciler)."""
    with read_session() as session:
        row = session.execute(
            select(Run.batch_id, Run.workflow_id).where(Run.id == run_id)  # type: ignore[call-overload]
        ).first()
    if row is not None:
        run_closed(run_id, batch_id=row.batch_id, workflow_id=row.workflow_id)
