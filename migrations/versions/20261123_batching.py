"""coalesced calls: targets.bisect_group, targets.bisect_calls

Revision ID: 20261123_batching
Revises: 20261123_jdcloud
Create Date: 2026-11-23 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_batching"
down_revision: str | None = "20261123_jdcloud"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        # Nullable / server default: COPY at submission names only the first columns.
        batch.add_column(sa.Column("bisect_group", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("bisect_calls", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("bisect_calls")
        batch.drop_column("bisect_group")
