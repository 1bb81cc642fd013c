"""Webhook deliveries in SQL: queued once per subscription and subject, claimed one
attempt at a time, and their outcome recorded.

An attempt is claimed by raising `attempts` and moving `next_attempt_at` past a lease,
in one conditional update: of two sweeps (or a sweep and the first attempt) only one
claims a given attempt, and an attempt whose worker died comes due again when its lease
runs out. The attempt number then fences the outcome: the late result of an attempt
that was superseded changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from shared.automation_models import WebhookDelivery, WebhookSubscription
from shared.models import new_id

__all__ = [
    "CLAIM_LEASE_SECONDS",
    "DELIVERED",
    "DELIVERIES",
    "FAILED",
    "PENDING",
    "SUBSCRIPTIONS",
    "Attempt",
    "Outcome",
    "ToSend",
    "claim",
    "due",
    "fail_pending",
    "give_up",
    "load",
    "queue",
    "record",
    "reopen",
    "subscriptions_for",
]

DELIVERIES = cast(Table, WebhookDelivery.__table__)  # type: ignore[attr-defined]
SUBSCRIPTIONS = cast(Table, WebhookSubscription.__table__)  # type: ignore[attr-defined]
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# A claimed attempt whose outcome is not recorded within this long was lost with its
# worker or its message; the sweep then sends the delivery again. It also covers the
# wait in a busy queue, so that a slow queue does not make attempts pile up.
CLAIM_LEASE_SECONDS = 300.0
_LEASE = timedelta(seconds=CLAIM_LEASE_SECONDS)
_UNIQUE = ["subscription_id", "event", "subject_id"]

Db = Connection | Session


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claimed attempt of one delivery: what a delivery task is told to make."""

    delivery_id: str
    number: int


@dataclass(frozen=True, slots=True)
class ToSend:
    id: str
    event: str
    url: str
    payload: dict[str, Any]
    created_at: datetime
    secret_ciphertext: str | None  # None: the subscription was deleted


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None = None


def subscriptions_for(
    db: Db, targets: Sequence[tuple[str, str]], *, created_by: datetime
) -> list[Row[Any]]:
    """The subscriptions (id, url) to any of `targets` that existed at `created_by`: a
    webhook added after an event does not hear of it."""
    wanted = or_(
        *(
            and_(SUBSCRIPTIONS.c.target_type == kind, SUBSCRIPTIONS.c.target_id == target_id)
            for kind, target_id in targets
        )
    )
    query = select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.url).where(
        wanted, SUBSCRIPTIONS.c.created_at <= created_by
    )
    return list(db.execute(query).all())


def queue(
    db: Connection,
    *,
    event: str,
    subject_id: str,
    payload: dict[str, Any],
    subscriptions: Iterable[Row[Any]],
    now: datetime,
) -> list[Attempt]:
    """Insert one delivery per subscription, already claimed for its first attempt; a
    delivery that exists for the same (subscription, event, subject) is left alone.
    Returns the first attempts to send after the commit."""
    insert = _insert_ignoring_duplicates(db)
    attempts = []
    for subscription in subscriptions:
        delivery_id = new_id()
        inserted = db.execute(
            insert,
            {
                "id": delivery_id,
                "subscription_id": subscription.id,
                "url": subscription.url,
                "event": event,
                "subject_id": subject_id,
                "payload": payload,
                "status": PENDING,
                "attempts": 1,
                "next_attempt_at": now + _LEASE,
                "created_at": now,
            },
        )
        if inserted.rowcount == 1:
            attempts.append(Attempt(delivery_id, 1))
    return attempts


def _insert_ignoring_duplicates(db: Connection) -> Any:
    if db.dialect.name == "postgresql":
        return postgresql.insert(DELIVERIES).on_conflict_do_nothing(index_elements=_UNIQUE)
    return sqlite.insert(DELIVERIES).on_conflict_do_nothing(index_elements=_UNIQUE)


def due(db: Db, *, now: datetime, limit: int) -> list[Row[Any]]:
    """Pending deliveries (id, attempts) whose next attempt, or whose lease, is due."""
    query = (
        select(DELIVERIES.c.id, DELIVERIES.c.attempts)
        .where(DELIVERIES.c.status == PENDING, DELIVERIES.c.next_attempt_at <= now)
        .order_by(DELIVERIES.c.next_attempt_at)
        .limit(limit)
    )
    return list(db.execute(query).all())


def _still(delivery_id: str, attempts: int) -> Any:
    return and_(
        DELIVERIES.c.id == delivery_id,
        DELIVERIES.c.status == PENDING,
        DELIVERIES.c.attempts == attempts,
    )


def claim(db: Connection, delivery_id: str, *, seen_attempts: int, now: datetime) -> Attempt | None:
    """Claim the next attempt of a due delivery; None if someone else claimed it first."""
    claimed = db.execute(
        update(DELIVERIES)
        .where(_still(delivery_id, seen_attempts), DELIVERIES.c.next_attempt_at <= now)
        .values(attempts=seen_attempts + 1, next_attempt_at=now + _LEASE)
    )
    return Attempt(delivery_id, seen_attempts + 1) if claimed.rowcount == 1 else None


def give_up(db: Connection, delivery_id: str, *, seen_attempts: int, now: datetime) -> None:
    """The last attempt's lease ran out without an outcome: no attempt is left."""
    db.execute(
        update(DELIVERIES)
        .where(_still(delivery_id, seen_attempts), DELIVERIES.c.next_attempt_at <= now)
        .values(
            status=FAILED,
            next_attempt_at=None,
            last_error="the last attempt got no recorded answer (its worker stopped)",
        )
    )


def load(db: Db, attempt: Attempt) -> ToSend | None:
    """The delivery to send for this attempt, with its subscription's encrypted secret;
    None if the attempt was superseded or the delivery has ended."""
    row = db.execute(
        select(
            DELIVERIES.c.id,
            DELIVERIES.c.event,
            DELIVERIES.c.url,
            DELIVERIES.c.payload,
            DELIVERIES.c.created_at,
            SUBSCRIPTIONS.c.secret_ciphertext,
        )
        .select_from(
            DELIVERIES.outerjoin(SUBSCRIPTIONS, SUBSCRIPTIONS.c.id == DELIVERIES.c.subscription_id)
        )
        .where(_still(attempt.delivery_id, attempt.number))
    ).first()
    if row is None:
        return None
    return ToSend(
        id=row.id,
        event=row.event,
        url=row.url,
        payload=dict(row.payload),
        created_at=row.created_at,
        secret_ciphertext=row.secret_ciphertext,
    )


def record(db: Connection, attempt: Attempt, outcome: Outcome) -> bool:
    """Store an attempt's outcome; False if the attempt had been superseded."""
    written = db.execute(
        update(DELIVERIES)
        .where(_still(attempt.delivery_id, attempt.number))
        .values(
            status=outcome.status,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
            next_attempt_at=outcome.next_attempt_at,
            delivered_at=outcome.delivered_at,
        )
    )
    return written.rowcount == 1


def reopen(db: Connection, delivery_id: str, *, now: datetime) -> Attempt | None:
    """Start a delivered or failed delivery over (a redelivery by hand), claimed for its
    first attempt; None if it is still pending."""
    reopened = db.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.status != PENDING)
        .values(
            status=PENDING,
            attempts=1,
            next_attempt_at=now + _LEASE,
            last_status_code=None,
            last_error=None,
            delivered_at=None,
        )
    )
    return Attempt(delivery_id, 1) if reopened.rowcount == 1 else None


def fail_pending(db: Db, subscription_id: str, *, reason: str) -> None:
    """End the pending deliveries of a subscription that is going away."""
    db.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.subscription_id == subscription_id, DELIVERIES.c.status == PENDING)
        .values(status=FAILED, next_attempt_at=None, last_error=reason)
    )
