"""queues: agents and keys may name a broker queue; steps keep the one resolved

`agents.queue` and `provider_keys.queue` are nullable (no queue of their own);
`step_runs.queue` is the queue resolved when the run was planned. Steps planned before
this migration went to the default queue, which the server default records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString
DEFAULT_QUEUE = "ownkey"  # as it was when this migration was written


def upgrade() -> None:
    with op.batch_alter_table("provider_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue", String(length=64), nullable=True))

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue", String(length=64), nullable=True))

    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("queue", String(length=64), nullable=False, server_default=DEFAULT_QUEUE)
        )


def downgrade() -> None:
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("queue")

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("queue")

    with op.batch_alter_table("provider_keys", schema=None) as batch_op:
        batch_op.drop_column("queue")
