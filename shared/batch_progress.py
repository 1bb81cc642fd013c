"""Where batches stand: items per state, tokens and cost so far, and an ETA.

Counts follow each item's current run (a retried item counts once, by its new run);
tokens and cost add up every run the batch started, retried ones included, because
each was paid for. Two grouped queries serve a whole page of batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, case, func, select
from sqlmodel import Session

from shared.automation_models import BatchItem, BatchStatus
from shared.models import Run, RunStatus, utcnow

__all__ = ["BatchProgress", "batch_progress", "eta_seconds"]

ITEMS = cast(Table, BatchItem.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]

_FAILED = (RunStatus.failed, RunStatus.budget_exceeded)


@dataclass(frozen=True, slots=True)
class BatchProgress:
    waiting: int = 0  # no run yet: released as slots free up
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0  # failed, or stopped by a budget
    cancelled: int = 0
    closed: int = 0  # items whose run has closed, whatever its outcome
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    cost_incomplete: bool = False


def _counts(db: Session | Connection, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    status = func.coalesce(RUNS.c.status, "waiting").label("status")
    closed = case((RUNS.c.finished_at.is_(None), 0), else_=1).label("closed")
    rows = db.execute(
        select(ITEMS.c.batch_id, status, closed, func.count())
        .select_from(ITEMS.outerjoin(RUNS, RUNS.c.id == ITEMS.c.run_id))
        .where(ITEMS.c.batch_id.in_(batch_ids))
        .group_by(ITEMS.c.batch_id, status, closed)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for batch_id, run_status, is_closed, n in rows:
        found = counts.setdefault(batch_id, {})
        key = "failed" if run_status in _FAILED else str(run_status)
        found[key] = found.get(key, 0) + int(n)
        if is_closed:
            found["closed"] = found.get("closed", 0) + int(n)
    return counts


def _usage(db: Session | Connection, batch_ids: Sequence[str]) -> dict[str, Any]:
    rows = db.execute(
        select(
            RUNS.c.batch_id,
            func.coalesce(func.sum(RUNS.c.input_tokens), 0),
            func.coalesce(func.sum(RUNS.c.output_tokens), 0),
            func.coalesce(func.sum(RUNS.c.cached_tokens), 0),
            func.coalesce(func.sum(RUNS.c.cost_nanos), 0),
            func.coalesce(func.max(case((RUNS.c.cost_incomplete, 1), else_=0)), 0),
        )
        .where(RUNS.c.batch_id.in_(batch_ids))
        .group_by(RUNS.c.batch_id)
    ).all()
    return {row[0]: row[1:] for row in rows}


def batch_progress(db: Session | Connection, batch_ids: Sequence[str]) -> dict[str, BatchProgress]:
    """The progress of each batch, by id (an unknown id gets all zeros)."""
    if not batch_ids:
        return {}
    counts = _counts(db, batch_ids)
    usage = _usage(db, batch_ids)
    result: dict[str, BatchProgress] = {}
    for batch_id in batch_ids:
        found = counts.get(batch_id, {})
        tokens_in, tokens_out, cached, cost, incomplete = usage.get(batch_id, (0, 0, 0, 0, 0))
        result[batch_id] = BatchProgress(
            waiting=found.get("waiting", 0),
            queued=found.get(RunStatus.queued, 0),
            running=found.get(RunStatus.running, 0),
            succeeded=found.get(RunStatus.succeeded, 0),
            failed=found.get("failed", 0),
            cancelled=found.get(RunStatus.cancelled, 0),
            closed=found.get("closed", 0),
            input_tokens=int(tokens_in),
            output_tokens=int(tokens_out),
            cached_tokens=int(cached),
            cost_nanos=int(cost),
            cost_incomplete=bool(incomplete),
        )
    return result


def eta_seconds(
    *,
    status: str,
    total: int,
    closed: int,
    started_at: datetime | None,
    now: datetime | None = None,
) -> float | None:
    """Seconds until every item has run, at the rate items have closed so far; None
    before the first one closes, and once the batch has ended."""
    if status != BatchStatus.running or started_at is None or closed <= 0:
        return None
    elapsed = ((now or utcnow()) - started_at).total_seconds()
    if elapsed <= 0:
        return None
    return round(max(total - closed, 0) * elapsed / closed, 1)
