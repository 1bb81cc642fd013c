"""Writing a step's outcome survives a short database outage.

A provider call that has been made (and paid) must not be made again because the
database was unreachable for a few seconds when its result came back: the write is
retried in place, with backoff, for up to `OUTCOME_WRITE_DEADLINE_SECONDS`. Only if
the database stays away longer is the result lost; the step's lease then runs out and
the reconciler runs it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# Errors that say "not now" rather than "never": the database is away, or every pooled
# connection stayed busy past the pool's timeout.
TRANSIENT_DB_ERRORS = (OperationalError, PoolTimeout)

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTCOME_WRITE_DEADLINE_SECONDS = 120.0


def is_transient_db_error(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def with_db_retry(
    write: Callable[[], T], *, what: str, deadline_seconds: float = OUTCOME_WRITE_DEADLINE_SECONDS
) -> T:
    deadline = time.monotonic() + deadline_seconds
    pause = 0.2
    while True:
        try:
            return write()
        except (DBAPIError, PoolTimeout) as exc:
            if not is_transient_db_error(exc) or time.monotonic() + pause > deadline:
                raise
            cause = getattr(exc, "orig", None) or exc
            log.warning("database unavailable while %s (%s); retrying", what, type(cause).__name__)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
