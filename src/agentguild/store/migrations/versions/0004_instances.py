"""instances, run and task owners, queued run input, job send times

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_instances_heartbeat_at"), "instances", ["heartbeat_at"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("pending_input", sa.JSON(), nullable=True))
        batch.create_index(batch.f("ix_runs_owner"), ["owner"])
        batch.create_index("ix_runs_conversation_status", ["conversation_id", "status"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.create_index(batch.f("ix_tasks_owner"), ["owner"])
    with op.batch_alter_table("queue_jobs") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_jobs") as batch:
        batch.drop_column("sent_at")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index(batch.f("ix_tasks_owner"))
        batch.drop_column("owner")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_conversation_status")
        batch.drop_index(batch.f("ix_runs_owner"))
        batch.drop_column("pending_input")
        batch.drop_column("owner")
    op.drop_index(op.f("ix_instances_heartbeat_at"), table_name="instances")
    op.drop_table("instances")
