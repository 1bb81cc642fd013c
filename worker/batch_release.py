"""Batches on the worker side: a closed run frees a slot of its batch, and beat's sweep
releases what a lost message or a dead worker left waiting.

Neither raises on a database error: the next close or the next sweep catches up, and
the `ownkey.run_closed` task still calls the webhooks after this.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from shared.automation_models import Batch, BatchStatus
from shared.batches import release_waiting
from shared.db import read_session
from shared.models import Run

__all__ = ["on_run_closed", "sweep"]

log = logging.getLogger(__name__)


def on_run_closed(run_id: str) -> None:
    """A run of a batch closed: release the next waiting items; finish the batch if
    every item's run has closed."""
    try:
        with read_session() as session:
            batch_id = session.execute(
                select(Run.batch_id).where(Run.id == run_id)  # type: ignore[call-overload]
            ).scalar()
        if batch_id is not None:
            release_waiting(batch_id)
    except SQLAlchemyError as exc:
        log.warning(
            "could not release the batch items after run %s closed (%s); the sweep will",
            run_id,
            type(exc).__name__,
        )


def sweep() -> int:
    """Release waiting items of every running batch into its free slots (and finish
    the batches whose last close was not heard); returns how many runs started."""
    with read_session() as session:
        batch_ids = list(
            session.execute(
                select(Batch.id).where(Batch.status == BatchStatus.running)  # type: ignore[call-overload]
            ).scalars()
        )
    started = 0
    for batch_id in batch_ids:
        try:
            started += release_waiting(batch_id)
        except SQLAlchemyError as exc:
            log.warning("could not release the items of batch %s: %s", batch_id, type(exc).__name__)
    return started
