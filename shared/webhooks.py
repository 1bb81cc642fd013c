"""Webhooks: a URL per workflow, batch or budget, called with a signed JSON body when a
run or a batch finishes or a budget reaches its soft limit.

Here events become deliveries: one row per subscription and subject (a run's close
heard twice still makes one), inserted already claimed for the first attempt, which a
worker's `ownkey.webhook_deliver` task then makes (worker/webhook_delivery.py).
Retries, and deliveries whose message was lost, are the sweep's
(worker/webhook_sweep.py). Call these functions after the commit that made the event
true: they read it back, and open their own transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from sqlalchemy import select

from shared import webhook_events, webhook_store
from shared.db import read_session, transaction
from shared.models import utcnow
from shared.webhook_events import WebhookEvent
from shared.webhook_store import SUBSCRIPTIONS, Attempt
from worker.celery_app import get_celery

__all__ = [
    "DELIVER_TASK",
    "enqueue_attempts",
    "forget_subscribers",
    "on_batch_finished",
    "on_budget_soft_limit",
    "on_run_closed",
    "publish",
    "workflow_has_subscribers",
]

log = logging.getLogger(__name__)

DELIVER_TASK = "ownkey.webhook_deliver"
# How long a process trusts its list of workflows with webhooks. A webhook added
# meanwhile misses nothing: the sweep queues what the list made this process skip.
SUBSCRIBERS_CACHE_SECONDS = 5.0

_cache_lock = threading.Lock()
_cache: tuple[float, frozenset[str]] | None = None


def workflow_has_subscribers(workflow_id: str) -> bool:
    """Whether runs of this workflow have webhooks: a set lookup, the set read again
    every few seconds, so runs of workflows without webhooks cost nothing. If it cannot
    be read, the answer is yes: a follow-up too many is cheap, a lost webhook is not."""
    subscribed = _subscribed_workflows()
    return subscribed is None or workflow_id in subscribed


def _subscribed_workflows() -> frozenset[str] | None:
    global _cache
    now = time.monotonic()
    with _cache_lock:
        if _cache is not None and _cache[0] > now:
            return _cache[1]
        try:
            with read_session() as session:
                ids = session.execute(
                    select(SUBSCRIPTIONS.c.target_id)
                    .where(SUBSCRIPTIONS.c.target_type == "workflow")
                    .distinct()
                ).scalars()
                subscribed = frozenset(ids)
        except Exception as exc:  # the database may be away; the caller must not fail
            log.warning("could not read the workflows with webhooks: %s", type(exc).__name__)
            return None
        _cache = (now + SUBSCRIBERS_CACHE_SECONDS, subscribed)
        return subscribed


def forget_subscribers() -> None:
    """After this process changed the subscriptions: read them again on the next call."""
    global _cache
    with _cache_lock:
        _cache = None


def on_run_closed(run_id: str) -> None:
    """Queue `run.finished` for the run's workflow's webhooks."""
    with read_session() as session:
        event = webhook_events.run_finished(session, run_id)
    publish(event)


def on_batch_finished(batch_id: str) -> None:
    """Queue `batch.finished` for the batch's webhooks and its workflow's."""
    with read_session() as session:
        event = webhook_events.batch_finished(session, batch_id)
    publish(event)


def on_budget_soft_limit(budget_id: str, *, spent_nanos: int, limit_nanos: int) -> None:
    """Queue `budget.soft_limit` for the budget's webhooks (once per budget window)."""
    with read_session() as session:
        event = webhook_events.budget_soft_limit(
            session, budget_id, spent_nanos=spent_nanos, limit_nanos=limit_nanos
        )
    publish(event)


def publish(event: WebhookEvent | None) -> list[Attempt]:
    """Insert the event's deliveries and send their first attempts. Reads first, so an
    event nobody listens to takes no write lock."""
    if event is None:
        return []
    with read_session() as session:
        listeners = webhook_store.subscriptions_for(
            session, event.targets, created_by=event.occurred_at
        )
    if not listeners:
        return []
    with transaction() as db:
        attempts = webhook_store.queue(
            db,
            event=event.name,
            subject_id=event.subject_id,
            payload=event.data,
            subscriptions=listeners,
            now=utcnow(),
        )
    enqueue_attempts(attempts)
    return attempts


def enqueue_attempts(attempts: Iterable[Attempt]) -> None:
    """Hand claimed attempts to the workers: the message names the delivery and the
    attempt, nothing else. A broker failure is logged, not raised: the attempt's lease
    runs out and the sweep sends it then."""
    for attempt in attempts:
        try:
            get_celery().send_task(DELIVER_TASK, args=[attempt.delivery_id, attempt.number])
        except Exception as exc:  # kombu raises many types for a broker outage
            log.warning(
                "could not enqueue webhook delivery %s: %s",
                attempt.delivery_id,
                type(exc).__name__,
            )
