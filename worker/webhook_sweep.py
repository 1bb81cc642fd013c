"""The webhook sweep (beat, every `OWNKEY_WEBHOOK_SWEEP_SECONDS`): claims the deliveries
whose retry is due, and queues the deliveries of events nobody announced.

An event goes unannounced when its message is lost (a broker outage after the run
closed) or when a worker's list of workflows with webhooks is a few seconds old. So the
sweep looks for what closed in the last hour, more than two sweeps ago, and lacks its
delivery; the unique (subscription, event, subject) makes a race with the announced
path harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, and_, exists, or_, select

from shared import webhook_events, webhook_store, webhooks
from shared.automation_models import Batch, BatchStatus, Budget, BudgetUsage
from shared.config import get_settings
from shared.db import read_session, transaction
from shared.models import Run, utcnow
from shared.webhook_events import BATCH_FINISHED, BUDGET_SOFT_LIMIT, RUN_FINISHED
from shared.webhook_store import DELIVERIES, SUBSCRIPTIONS, Attempt

__all__ = ["SweepResult", "catch_up", "send_due", "sweep"]

log = logging.getLogger(__name__)

RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
BATCHES = cast(Table, Batch.__table__)  # type: ignore[attr-defined]
BUDGETS = cast(Table, Budget.__table__)  # type: ignore[attr-defined]
USAGE = cast(Table, BudgetUsage.__table__)  # type: ignore[attr-defined]
CATCH_UP_WINDOW = timedelta(hours=1)
# Per sweep; what is left waits for the next one.
BATCH_SIZE = 200


@dataclass(frozen=True, slots=True)
class SweepResult:
    caught_up: int
    sent: int


def sweep(now: datetime | None = None) -> SweepResult:
    now = now or utcnow()
    result = SweepResult(caught_up=catch_up(now), sent=send_due(now))
    if result.caught_up:
        log.info("webhook sweep: queued the deliveries of %d unannounced events", result.caught_up)
    return result


def send_due(now: datetime) -> int:
    """Claim each due delivery's next attempt and hand it to a worker. A delivery whose
    last attempt never reported back is failed instead."""
    max_attempts = get_settings().webhook_max_attempts
    with read_session() as session:
        rows = webhook_store.due(session, now=now, limit=BATCH_SIZE)
    if not rows:
        return 0
    claimed: list[Attempt] = []
    with transaction() as db:
        for row in rows:
            if row.attempts >= max_attempts:
                webhook_store.give_up(db, row.id, seen_attempts=row.attempts, now=now)
                continue
            attempt = webhook_store.claim(db, row.id, seen_attempts=row.attempts, now=now)
            if attempt is not None:
                claimed.append(attempt)
    webhooks.enqueue_attempts(claimed)
    return len(claimed)


def catch_up(now: datetime) -> int:
    """Queue the deliveries of recent events that lack theirs; returns how many events."""
    grace = timedelta(seconds=2 * get_settings().webhook_sweep_seconds)
    since, until = now - CATCH_UP_WINDOW, now - grace
    with read_session() as session:
        run_ids = session.execute(_unannounced_runs(since, until)).scalars().all()
        batch_ids = session.execute(_unannounced_batches(since, until)).scalars().all()
        warnings = session.execute(_unannounced_warnings(since, until)).all()
        events = [webhook_events.run_finished(session, run_id) for run_id in run_ids]
        events += [webhook_events.batch_finished(session, batch_id) for batch_id in batch_ids]
        events += [
            webhook_events.budget_soft_limit(
                session,
                w.budget_id,
                spent_nanos=w.spent_nanos,
                limit_nanos=w.limit_nanos,
                usage_id=w.id,
            )
            for w in warnings
        ]
    for event in events:
        webhooks.publish(event)
    return len(events)


def _missing(event: str, subject: Any) -> Any:
    return ~exists().where(
        DELIVERIES.c.subscription_id == SUBSCRIPTIONS.c.id,
        DELIVERIES.c.event == event,
        DELIVERIES.c.subject_id == subject,
    )


def _unannounced_runs(since: datetime, until: datetime) -> Select[Any]:
    listens = and_(
        SUBSCRIPTIONS.c.target_type == "workflow",
        SUBSCRIPTIONS.c.target_id == RUNS.c.workflow_id,
        SUBSCRIPTIONS.c.created_at <= RUNS.c.finished_at,
    )
    return (
        select(RUNS.c.id)
        .distinct()
        .select_from(RUNS.join(SUBSCRIPTIONS, listens))
        .where(
            RUNS.c.finished_at >= since,
            RUNS.c.finished_at <= until,
            _missing(RUN_FINISHED, RUNS.c.id),
        )
        .limit(BATCH_SIZE)
    )


def _unannounced_batches(since: datetime, until: datetime) -> Select[Any]:
    listens = and_(
        or_(
            and_(SUBSCRIPTIONS.c.target_type == "batch", SUBSCRIPTIONS.c.target_id == BATCHES.c.id),
            and_(
                SUBSCRIPTIONS.c.target_type == "workflow",
                SUBSCRIPTIONS.c.target_id == BATCHES.c.workflow_id,
            ),
        ),
        SUBSCRIPTIONS.c.created_at <= BATCHES.c.finished_at,
    )
    return (
        select(BATCHES.c.id)
        .distinct()
        .select_from(BATCHES.join(SUBSCRIPTIONS, listens))
        .where(
            BATCHES.c.status != BatchStatus.running,
            BATCHES.c.finished_at >= since,
            BATCHES.c.finished_at <= until,
            _missing(BATCH_FINISHED, BATCHES.c.id),
        )
        .limit(BATCH_SIZE)
    )


def _unannounced_warnings(since: datetime, until: datetime) -> Select[Any]:
    listens = and_(
        SUBSCRIPTIONS.c.target_type == "budget",
        SUBSCRIPTIONS.c.target_id == USAGE.c.budget_id,
        SUBSCRIPTIONS.c.created_at <= USAGE.c.soft_warned_at,
    )
    return (
        select(USAGE.c.id, USAGE.c.budget_id, USAGE.c.spent_nanos, BUDGETS.c.limit_nanos)
        .distinct()
        .select_from(
            USAGE.join(BUDGETS, BUDGETS.c.id == USAGE.c.budget_id).join(SUBSCRIPTIONS, listens)
        )
        .where(
            USAGE.c.soft_warned_at >= since,
            USAGE.c.soft_warned_at <= until,
            _missing(BUDGET_SOFT_LIMIT, USAGE.c.id),
        )
        .limit(BATCH_SIZE)
    )
