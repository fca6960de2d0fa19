"""Replica observations: each replica's counters of released backends, for the leader's
release analysis across replicas.

Revision ID: 0005_rel
Revises: 0004_rem
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_rel"
down_revision: str | None = "0004_rem"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replica_observations",
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("published_at", sa.Float(), nullable=False),
        sa.Column("routes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("replica", name="pk_replica_observations"),
    )


def downgrade() -> None:
    op.drop_table("replica_observations")
