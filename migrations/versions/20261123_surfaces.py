"""surfaces: job cancel and callbacks, callback attempts, job listing index

Revision ID: 20261123_surfaces
Revises: 20261123_batching
Create Date: 2026-11-23 08:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.store.db

revision: str = "20261123_surfaces"
down_revision: str | None = "20261123_batching"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLBACK_PENDING = sa.text("callback_state = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("cancel_requested_at", app.store.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("callback_url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("callback_state", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("callback_next_at", app.store.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_jobs_callback_due",
        "jobs",
        ["callback_next_at"],
        unique=False,
        postgresql_where=CALLBACK_PENDING,
        sqlite_where=CALLBACK_PENDING,
    )
    op.create_table(
        "callback_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", app.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_callback_attempts_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    op.create_index(
        op.f("ix_callback_attempts_job_id"), "callback_attempts", ["job_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_attempts_job_id"), table_name="callback_attempts")
    op.drop_table("callback_attempts")
    op.drop_index(
        "ix_jobs_callback_due",
        table_name="jobs",
        postgresql_where=CALLBACK_PENDING,
        sqlite_where=CALLBACK_PENDING,
    )
    op.drop_index("ix_jobs_created", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("callback_next_at")
        batch.drop_column("callback_state")
        batch.drop_column("callback_url")
        batch.drop_column("cancel_requested_at")
