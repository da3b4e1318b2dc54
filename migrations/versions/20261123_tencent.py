"""verify phase: targets.phase, verify_request_id, verify_started_at, verify_checks, notes

Revision ID: 20261123_tencent
Revises: 20261123_tenants
Create Date: 2026-11-23 08:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.store.db

revision: str = "20261123_tencent"
down_revision: str | None = "20261123_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERIFY_DUE = "state = 'running' AND phase = 'verify' AND lease_token IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        # server defaults: existing rows (and COPY, which names only the first columns) get
        # the bind phase and no checks.
        batch.add_column(
            sa.Column("phase", sa.String(length=8), server_default="bind", nullable=False)
        )
        batch.add_column(sa.Column("verify_request_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("verify_started_at", app.store.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("verify_checks", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("notes", sa.JSON(), nullable=True))
    op.create_index(
        "ix_targets_verify_due",
        "targets",
        ["job_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text(VERIFY_DUE),
        sqlite_where=sa.text(VERIFY_DUE),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_targets_verify_due",
        table_name="targets",
        postgresql_where=sa.text(VERIFY_DUE),
        sqlite_where=sa.text(VERIFY_DUE),
    )
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("notes")
        batch.drop_column("verify_checks")
        batch.drop_column("verify_started_at")
        batch.drop_column("verify_request_id")
        batch.drop_column("phase")
