"""users, web sessions, audit log; API tokens belong to users

Also an index on `step_runs.finished_at` for usage reports by period.

Every API token now acts as a user, with that user's role. Tokens made before users
existed go to a user named `admin` (role admin, no password yet: `ownkey up` or
`ownkey user set-password admin` gives it one).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 19:45:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("username", String(length=64), nullable=False),
        sa.Column("password_hash", String(length=255), nullable=True),
        sa.Column("role", String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", String(length=64), nullable=False),
        sa.Column("user_id", String(length=32), nullable=False),
        sa.Column("csrf_token", String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", String(length=32), nullable=True),
        sa.Column("username", String(length=64), nullable=False),
        sa.Column("action", String(length=64), nullable=False),
        sa.Column("target_type", String(length=32), nullable=False),
        sa.Column("target_id", String(length=64), nullable=True),
        sa.Column("target_name", String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])

    op.create_index("ix_step_runs_finished_at", "step_runs", ["finished_at"])

    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("user_id", String(length=32), nullable=True))
    connection = op.get_bind()
    if connection.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar_one():
        admin_id = uuid.uuid4().hex
        connection.execute(
            sa.text(
                "INSERT INTO users (id, username, password_hash, role, created_at) "
                "VALUES (:id, 'admin', NULL, 'admin', :now)"
            ),
            {"id": admin_id, "now": datetime.now(UTC)},
        )
        connection.execute(sa.text("UPDATE api_tokens SET user_id = :id"), {"id": admin_id})
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.alter_column("user_id", existing_type=String(length=32), nullable=False)
        batch_op.create_index("ix_api_tokens_user_id", ["user_id"])
        batch_op.create_foreign_key("fk_api_tokens_user_id", "users", ["user_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_constraint("fk_api_tokens_user_id", type_="foreignkey")
        batch_op.drop_index("ix_api_tokens_user_id")
        batch_op.drop_column("user_id")
    op.drop_index("ix_step_runs_finished_at", table_name="step_runs")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
