"""Tables for running work without a person at the keyboard: schedules, batches, budgets
and webhooks. (The core tables are in shared/models.py, which imports this module so
that SQLModel's metadata and the migrations see every table.)

Every fire time of a schedule is a row with a unique (schedule, fire time): a second
beat that fires the same time fails its insert instead of starting a second run.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Column, Index, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models import DateTime, Run, new_id, utcnow

__all__ = [
    "Batch",
    "BatchItem",
    "BatchStatus",
    "Budget",
    "BudgetScope",
    "BudgetUsage",
    "MisfirePolicy",
    "Schedule",
    "ScheduleFire",
    "WebhookDelivery",
    "WebhookSubscription",
]


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def _ts(*, index: bool = False) -> Any:
    return Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=index)
    )


# --- Schedules -----------------------------------------------------------------------


class MisfirePolicy(enum.StrEnum):
    skip = "skip"  # fire times missed while beat was down are not run
    catch_up = "catch_up"  # the missed fire times run once, together, when beat returns


class Schedule(SQLModel, table=True):
    __tablename__ = "schedules"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=100, unique=True)
    workflow_id: str = Field(foreign_key="workflows.id", max_length=32, index=True)
    cron: str = Field(max_length=100)
    timezone: str = Field(default="UTC", max_length=64)
    # Exactly one of: one run with `input`, or a batch over `dataset` (a list of inputs).
    input: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    dataset: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    max_in_flight: int = 10  # for a dataset's batch
    enabled: bool = True
    misfire_policy: str = Field(default=MisfirePolicy.skip, max_length=16)
    # The next fire time in UTC; None while paused.
    next_fire_at: datetime | None = _ts(index=True)
    last_fire_at: datetime | None = _ts()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ScheduleFire(SQLModel, table=True):
    """One fire time of one schedule, and what it started. The unique constraint is what
    makes a fire time produce its run exactly once, whatever the number of beats."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    schedule_id: str = Field(foreign_key="schedules.id", max_length=32, index=True)
    fire_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # The fire times a catch-up covered, besides its own (empty normally).
    missed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    run_id: str | None = Field(default=None, max_length=32)
    batch_id: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _created()


# --- Batches -------------------------------------------------------------------------


class BatchStatus(enum.StrEnum):
    running = "running"  # items are being released as runs
    succeeded = "succeeded"  # every item's run succeeded
    finished = "finished"  # every item ran; some failed
    cancelled = "cancelled"


class Batch(SQLModel, table=True):
    __tablename__ = "batches"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str | None = Field(default=None, max_length=200)
    workflow_id: str = Field(foreign_key="workflows.id", max_length=32, index=True)
    status: str = Field(default=BatchStatus.running, max_length=16)
    max_in_flight: int = 10
    total: int = 0
    # Column order for the CSV export: the dataset's own fields, as first seen.
    input_columns: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    schedule_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = _created()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class BatchItem(SQLModel, table=True):
    """One dataset row; it becomes a run when the batch has a free in-flight slot."""

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "position"),
        Index("ix_batch_items_waiting", "batch_id", "run_id", "position"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    batch_id: str = Field(foreign_key="batches.id", max_length=32)
    position: int  # the row's line number in the dataset, from 1
    input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    run_id: str | None = Field(default=None, max_length=32, index=True)  # None: waiting
    # Earlier runs of this item, when "retry failed" gave it a new one.
    previous_run_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


# --- Budgets -------------------------------------------------------------------------


class BudgetScope(enum.StrEnum):
    instance = "instance"  # every call
    key = "key"  # calls with one provider key
    workflow = "workflow"  # calls of one workflow's runs


class Budget(SQLModel, table=True):
    __tablename__ = "budgets"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=100, unique=True)
    scope: str = Field(max_length=16)
    scope_id: str | None = Field(default=None, max_length=32, index=True)  # key or workflow id
    limit_nanos: int = Field(sa_column=Column(BigInteger, nullable=False))
    # "month" (calendar month, UTC) or "custom" (window_start .. window_end).
    window: str = Field(default="month", max_length=16)
    window_start: datetime | None = _ts()
    window_end: datetime | None = _ts()
    soft_limit_percent: int | None = None  # warn (event + webhooks) when this much is spent
    created_at: datetime = _created()
    updated_at: datetime = _created()


class BudgetUsage(SQLModel, table=True):
    """What a budget's window has spent, added to as each step's cost is recorded.

    No foreign key to `budgets` on purpose: workers add to these rows from a list of
    budgets that may be seconds old, and a budget deleted meanwhile must not make a
    paid step fail to record (its straggler row is never read)."""

    __tablename__ = "budget_usage"
    __table_args__ = (UniqueConstraint("budget_id", "window_start"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    budget_id: str = Field(max_length=32, index=True)
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    spent_nanos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    soft_warned_at: datetime | None = _ts()
    exceeded_at: datetime | None = _ts()


# --- Webhooks ------------------------------------------------------------------------


class WebhookSubscription(SQLModel, table=True):
    """A URL called when a run of a workflow or a batch finishes, or a budget reaches its
    soft limit."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_target", "target_type", "target_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    target_type: str = Field(max_length=16)  # "workflow", "batch" or "budget"
    target_id: str = Field(max_length=32)
    url: str = Field(max_length=2000)
    # The HMAC-SHA256 signing secret, encrypted with the master key like provider keys.
    secret_ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _created()


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscription. The unique (subscription, event, subject) is what
    makes a run's close, heard twice, produce one delivery."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        UniqueConstraint("subscription_id", "event", "subject_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    subscription_id: str | None = Field(default=None, max_length=32, index=True)
    url: str = Field(max_length=2000)
    event: str = Field(max_length=64)  # "run.finished", "batch.finished", "budget.soft_limit"
    # What the event is about: the run's or batch's id, or the budget's window.
    subject_id: str = Field(max_length=128)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending, delivered, failed
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _created()
    delivered_at: datetime | None = _ts()


# The webhook sweep looks for runs that closed lately without their delivery (a run_closed
# message lost in a broker outage); without this index that is a scan of every run.
_RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
_RUNS_FINISHED_AT = Index("ix_runs_finished_at", _RUNS.c.finished_at)
