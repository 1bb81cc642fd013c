"""ownkey's SQL tables (SQLModel). The database is the source of truth; the broker only
carries step ids.

Ids are 32-character hex UUIDs so that rows can be created on any server without a
round trip. Money is stored as integer nano-dollars (`*_nanos`): sums are exact on
SQLite and PostgreSQL alike, and a single cheap call (a few tokens on a small model)
is still far above the resolution.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Dialect, Index, Text, UniqueConstraint
from sqlalchemy import DateTime as _DateTime
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from shared.queues import DEFAULT_QUEUE, MAX_QUEUE_NAME

__all__ = [
    "FINAL_RUN_STATUSES",
    "FINAL_STEP_STATUSES",
    "Agent",
    "ApiToken",
    "AuditEvent",
    "ModelPrice",
    "ProviderKey",
    "Run",
    "Role",
    "RunStatus",
    "StepRun",
    "StepStatus",
    "User",
    "WebSession",
    "Workflow",
    "WorkflowVersion",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class DateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database. SQLite has no zone type and
    reads a stored timestamp back naive; this gives it back its (UTC) zone."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__()

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    budget_exceeded = "budget_exceeded"  # a budget ran out before a step could call


class StepStatus(enum.StrEnum):
    pending = "pending"  # waiting for its dependencies
    queued = "queued"  # enqueued (or due to be re-enqueued) for a worker
    running = "running"  # claimed by a worker, under a lease
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"  # an upstream step failed or the run was cancelled
    cancelled = "cancelled"  # running when its run was cancelled: usage kept, output discarded


FINAL_RUN_STATUSES = frozenset(
    {RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.budget_exceeded}
)
FINAL_STEP_STATUSES = frozenset(
    {StepStatus.succeeded, StepStatus.failed, StepStatus.skipped, StepStatus.cancelled}
)


class ProviderKey(SQLModel, table=True):
    __tablename__ = "provider_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    provider: str = Field(max_length=32)
    name: str = Field(max_length=100, unique=True)
    base_url: str = Field(max_length=500)
    secret_ciphertext: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    key_hint: str = Field(default="", max_length=8)
    # Cluster-wide limits enforced by shared.rate_limits; None means no limit of that kind.
    rpm: int | None = None
    tpm: int | None = None
    # The broker queue of its agents' steps unless an agent names its own (shared.queues).
    queue: str | None = Field(default=None, max_length=MAX_QUEUE_NAME)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Agent(SQLModel, table=True):
    __tablename__ = "agents"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=100, unique=True)
    key_id: str = Field(foreign_key="provider_keys.id", max_length=32, index=True)
    model: str = Field(max_length=200)
    system_prompt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float | None = None
    max_attempts: int = 3
    # The broker queue of its steps; None: its key's queue, else the default queue.
    queue: str | None = Field(default=None, max_length=MAX_QUEUE_NAME)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Workflow(SQLModel, table=True):
    __tablename__ = "workflows"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=100, unique=True)
    current_version: int = 1
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class WorkflowVersion(SQLModel, table=True):
    """An immutable snapshot of a workflow definition; a run keeps the version it ran."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workflow_id: str = Field(foreign_key="workflows.id", max_length=32, index=True)
    version: int
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_at"),
        # Two submissions with one Idempotency-Key cannot both insert, even at once.
        Index("ux_runs_idempotency_key", "idempotency_key", unique=True),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    workflow_id: str = Field(foreign_key="workflows.id", max_length=32, index=True)
    workflow_version_id: str = Field(foreign_key="workflow_versions.id", max_length=32)
    status: str = Field(default=RunStatus.queued, max_length=16)
    input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failed_step: str | None = Field(default=None, max_length=64)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    cost_incomplete: bool = False
    # The client's Idempotency-Key and a SHA-256 of the request it came with.
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    batch_id: str | None = Field(default=None, max_length=32, index=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class StepRun(SQLModel, table=True):
    """One step of one run: what it asked, of whom, and what it cost."""

    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "step_key"),
        Index("ix_step_runs_status_queued", "status", "queued_at"),
        Index("ix_step_runs_finished_at", "finished_at"),  # usage reports by period
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    run_id: str = Field(foreign_key="runs.id", max_length=32, index=True)
    step_key: str = Field(max_length=64)
    position: int = 0
    depends_on: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=StepStatus.pending, max_length=16)
    # What the step runs with, copied at submission so later edits do not change a run.
    agent_id: str = Field(max_length=32)
    agent_name: str = Field(max_length=100)
    key_id: str = Field(max_length=32)
    provider: str = Field(max_length=32)
    model: str = Field(max_length=200)
    prompt_template: str = Field(sa_column=Column(Text, nullable=False))
    # system_prompt, temperature, max_tokens, timeout_seconds, max_attempts at submission.
    agent_config: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # The broker queue resolved at submission (shared.queues); every enqueue uses it.
    queue: str = Field(
        default=DEFAULT_QUEUE,
        max_length=MAX_QUEUE_NAME,
        sa_column_kwargs={"server_default": DEFAULT_QUEUE},
    )
    # Execution state.
    attempts: int = 0
    claim_token: str | None = Field(default=None, max_length=32)
    lease_expires_at: datetime | None = _ts()
    not_before: datetime | None = _ts()
    worker_host: str | None = Field(default=None, max_length=255)
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    # Results.
    prompt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    output: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error_kind: str | None = Field(default=None, max_length=32)
    finish_reason: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=200)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_nanos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    latency_ms: int | None = None
    attempt_log: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


class ModelPrice(SQLModel, table=True):
    """A user's price override (USD per million tokens); the shipped table fills the rest."""

    __tablename__ = "model_prices"
    __table_args__ = (UniqueConstraint("provider", "model"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    provider: str = Field(max_length=32)
    model: str = Field(max_length=200)
    input_per_mtok: str = Field(max_length=32)  # decimal text: exact on every database
    output_per_mtok: str = Field(max_length=32)
    cached_input_per_mtok: str | None = Field(default=None, max_length=32)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class Role(enum.StrEnum):
    """What a user may do; each role includes the ones below it."""

    viewer = "viewer"  # read everything except secrets (which nobody reads)
    member = "member"  # + agents, workflows, runs
    admin = "admin"  # + provider keys, users, prices, the audit log

    @property
    def rank(self) -> int:
        return ROLE_RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


ROLE_RANKS = {Role.viewer: 0, Role.member: 1, Role.admin: 2}


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    username: str = Field(max_length=64, unique=True)
    # argon2id (shared/passwords.py); None: cannot sign in until a password is set.
    password_hash: str | None = Field(default=None, max_length=255)
    role: str = Field(default=Role.member, max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    last_login_at: datetime | None = _ts()
    disabled_at: datetime | None = _ts()


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random value; only its hash is stored."""

    __tablename__ = "web_sessions"

    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie value
    user_id: str = Field(foreign_key="users.id", max_length=32, index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AuditEvent(SQLModel, table=True):
    """Who did what to which object; written in the same transaction as the change."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    user_id: str | None = Field(default=None, max_length=32)
    username: str = Field(max_length=64)  # kept as it was: users can be renamed or removed
    action: str = Field(max_length=64)  # e.g. "key.created", "run.cancelled"
    target_type: str = Field(max_length=32)
    target_id: str | None = Field(default=None, max_length=64)
    target_name: str | None = Field(default=None, max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    # The token acts as this user, with the user's role at the time of each request.
    user_id: str = Field(foreign_key="users.id", max_length=32, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


# Registers the schedules, batches, budgets and webhooks tables on the same metadata.
from shared import automation_models  # noqa: E402, F401
