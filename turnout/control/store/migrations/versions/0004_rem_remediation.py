"""Remediation: received alerts (idempotent on their delivery key) and durable runs.

Revision ID: 0004_rem
Revises: 0003_sec
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004_rem"
down_revision: str | None = "0003_sec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(64), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(253), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alertname", sa.String(253), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("annotations", _json(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("dedup_key", name="uq_alerts_dedup_key"),
    )
    op.create_table(
        "remediation_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("runbook_namespace", sa.String(253), nullable=False),
        sa.Column("runbook_name", sa.String(253), nullable=False),
        sa.Column("runbook_version", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(253), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("deadline_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("plan", _json(), nullable=False),
        sa.Column("timeline", _json(), nullable=False),
        sa.Column("approval", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_remediation_runs"),
        sa.UniqueConstraint("idempotency_key", name="uq_remediation_runs_idempotency_key"),
    )
    op.create_index("ix_remediation_runs_state", "remediation_runs", ["state"])
    op.create_index("ix_remediation_runs_target", "remediation_runs", ["target"])


def downgrade() -> None:
    op.drop_index("ix_remediation_runs_target", "remediation_runs")
    op.drop_index("ix_remediation_runs_state", "remediation_runs")
    op.drop_table("remediation_runs")
    op.drop_table("alerts")
