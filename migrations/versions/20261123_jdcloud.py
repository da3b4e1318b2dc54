"""JD Cloud: targets.previous_key (the key a replace detached)

Revision ID: 20261123_jdcloud
Revises: 20261123_tencent
Create Date: 2026-11-23 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261123_jdcloud"
down_revision: str | None = "20261123_tencent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("previous_key", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("previous_key")
