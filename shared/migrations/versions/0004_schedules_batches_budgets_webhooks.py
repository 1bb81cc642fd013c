"""schedules, batches, budgets, webhooks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString


def _ts(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("name", String(length=100), nullable=False),
        sa.Column("workflow_id", String(length=32), nullable=False),
        sa.Column("cron", String(length=100), nullable=False),
        sa.Column("timezone", String(length=64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("dataset", sa.JSON(), nullable=True),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("misfire_policy", String(length=16), nullable=False),
        _ts("next_fire_at"),
        _ts("last_fire_at"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_schedules_workflow_id", "schedules", ["workflow_id"])
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("schedule_id", String(length=32), nullable=False),
        _ts("fire_time", nullable=False),
        sa.Column("missed", sa.JSON(), nullable=False),
        sa.Column("run_id", String(length=32), nullable=True),
        sa.Column("batch_id", String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at", nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "fire_time"),
    )
    op.create_index("ix_schedule_fires_schedule_id", "schedule_fires", ["schedule_id"])
    op.create_table(
        "batches",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("name", String(length=200), nullable=True),
        sa.Column("workflow_id", String(length=32), nullable=False),
        sa.Column("status", String(length=16), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("input_columns", sa.JSON(), nullable=False),
        sa.Column("schedule_id", String(length=32), nullable=True),
        _ts("created_at", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_workflow_id", "batches", ["workflow_id"])
    op.create_table(
        "batch_items",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("batch_id", String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("run_id", String(length=32), nullable=True),
        sa.Column("previous_run_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_id", "position"),
    )
    op.create_index("ix_batch_items_waiting", "batch_items", ["batch_id", "run_id", "position"])
    op.create_index("ix_batch_items_run_id", "batch_items", ["run_id"])
    op.create_table(
        "budgets",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("name", String(length=100), nullable=False),
        sa.Column("scope", String(length=16), nullable=False),
        sa.Column("scope_id", String(length=32), nullable=True),
        sa.Column("limit_nanos", sa.BigInteger(), nullable=False),
        sa.Column("window", String(length=16), nullable=False),
        _ts("window_start"),
        _ts("window_end"),
        sa.Column("soft_limit_percent", sa.Integer(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_budgets_scope_id", "budgets", ["scope_id"])
    op.create_table(
        "budget_usage",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("budget_id", String(length=32), nullable=False),
        _ts("window_start", nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        _ts("soft_warned_at"),
        _ts("exceeded_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("budget_id", "window_start"),
    )
    op.create_index("ix_budget_usage_budget_id", "budget_usage", ["budget_id"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("target_type", String(length=16), nullable=False),
        sa.Column("target_id", String(length=32), nullable=False),
        sa.Column("url", String(length=2000), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_webhook_subscriptions_target", "webhook_subscriptions", ["target_type", "target_id"]
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("subscription_id", String(length=32), nullable=True),
        sa.Column("url", String(length=2000), nullable=False),
        sa.Column("event", String(length=64), nullable=False),
        sa.Column("subject_id", String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("delivered_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_id", "event", "subject_id"),
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_id", "webhook_deliveries", ["subscription_id"]
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("batch_id", String(length=32), nullable=True))
        batch_op.create_index("ix_runs_batch_id", ["batch_id"])
        batch_op.create_index("ix_runs_finished_at", ["finished_at"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_index("ix_runs_finished_at")
        batch_op.drop_index("ix_runs_batch_id")
        batch_op.drop_column("batch_id")
    for table in (
        "webhook_deliveries",
        "webhook_subscriptions",
        "budget_usage",
        "budgets",
        "batch_items",
        "batches",
        "schedule_fires",
        "schedules",
    ):
        op.drop_table(table)
