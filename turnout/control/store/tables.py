"""The store's tables as SQLAlchemy Core ``Table`` objects (one ``MetaData``).

- ``objects``: the current desired state, one row per (kind, namespace, name); cluster-scoped
  kinds use the namespace ``""``. ``resource_version`` is the revision that last changed
  the row, ``generation`` counts spec changes.
- ``revisions``: one immutable row per commit that changed something, with a snapshot of
  every manifest after the commit (what a rollback restores) and a summary of the changes.
- ``audit``: who did what, when, with which result (also failed and denied requests).
- ``reconciler_progress``: per reconciler and object, what it last reconciled and when it
  runs next (survives restarts and leader changes).
- ``tokens``: API tokens; only a hash of the secret is kept. A partial unique index keeps
  the names of non-revoked tokens unique.

JSON columns are ``JSON`` with a ``JSONB`` variant on PostgreSQL. Timestamps are
``UTCDateTime``: stored in UTC, always returned timezone-aware (SQLite keeps no offset, so
naive values read back are UTC by construction). The schema itself is created by the
Alembic migrations in ``migrations/versions``; these definitions must match them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def json_type() -> TypeEngine[Any]:
    """``JSON``, stored as ``JSONB`` on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware ``DateTime`` that always binds and returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store only takes timezone-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAME = 253  # DNS subdomain length, the longest Kubernetes object name
KIND = 63

objects = Table(
    "objects",
    metadata,
    Column("kind", String(KIND), primary_key=True),
    Column("namespace", String(NAME), primary_key=True),
    Column("name", String(NAME), primary_key=True),
    Column("api_version", String(NAME), nullable=False),
    Column("labels", json_type(), nullable=False),
    Column("annotations", json_type(), nullable=False),
    Column("spec", json_type(), nullable=True),
    Column("status", json_type(), nullable=True),
    Column("resource_version", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

revisions = Table(
    "revisions",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("actor", String(NAME), nullable=False),
    Column("message", Text, nullable=False),
    Column("changes", json_type(), nullable=False),
    Column("snapshot", json_type(), nullable=False),
    Column("rollback_of", Integer, nullable=True),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime(), nullable=False),
    Column("actor", String(NAME), nullable=False),
    Column("action", String(64), nullable=False),
    Column("result", String(32), nullable=False),
    Column("target", Text, nullable=False),
    Column("revision", Integer, nullable=True),
    Column("message", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("remote", String(NAME), nullable=False),
    Index("ix_audit_time", "time"),
    Index("ix_audit_actor", "actor"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(NAME), nullable=False),
    Column("role", String(32), nullable=False),
    Column("namespaces", json_type(), nullable=False),
    Column("secret_hash", String(512), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(NAME), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Index(
        "uq_tokens_active_name",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

# Each reconciler's progress per object (see control/reconcile/manager.py): the
# resource_version it last reconciled, when it asked to run again (wall seconds), its
# current error streak. What lets a restarted or newly elected leader resume.
reconciler_progress = Table(
    "reconciler_progress",
    metadata,
    Column("reconciler", String(KIND), primary_key=True),
    Column("kind", String(KIND), primary_key=True),
    Column("namespace", String(NAME), primary_key=True),
    Column("name", String(NAME), primary_key=True),
    Column("observed_version", Integer, nullable=False),
    Column("requeue_at", Float, nullable=True),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Named values about the store itself; "secrets_kid": the id of the key that sealed every
# Secret in it (see sealing.py and sealed_rows.py).
store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(KIND), primary_key=True),
    Column("value", Text, nullable=False),
)

# Alerts received (Alertmanager webhook or internal signals), one row per delivery key
# (sha256 of groupKey, fingerprint, status, startsAt): duplicates only count deliveries.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("group_key", Text, nullable=False),
    Column("fingerprint", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("alertname", String(NAME), nullable=False),
    Column("labels", json_type(), nullable=False),
    Column("annotations", json_type(), nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("source", String(32), nullable=False),
)

# Remediation runs, persisted step by step (control/remediation/engine.py): the plan
# (steps rendered at creation), the step reached and its attempt, when it is due next,
# its deadline, its timeline. ``idempotency_key`` makes one alert start one run per runbook.
remediation_runs = Table(
    "remediation_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("runbook_namespace", String(NAME), nullable=False),
    Column("runbook_name", String(NAME), nullable=False),
    Column("runbook_version", Integer, nullable=False),
    Column("alert_id", Integer, nullable=False),
    Column("target", String(NAME), nullable=False),
    Column("state", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("deadline_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("dry_run", Boolean, nullable=False),
    Column("plan", json_type(), nullable=False),
    Column("timeline", json_type(), nullable=False),
    Column("approval", json_type(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_remediation_runs_state", "state"),
    Index("ix_remediation_runs_target", "target"),
)

# Each replica's data-plane counters of released backends (control/releases/observations.py):
# one row per replica, replaced about once a second; the leader's release analysis sums
# the rows of live replicas. ``routes`` is JSON: [[route, backend, codes, buckets], ...].
replica_observations = Table(
    "replica_observations",
    metadata,
    Column("replica", String(64), primary_key=True),
    Column("published_at", Float, nullable=False),
    Column("routes", Text, nullable=False),
)
