"""Alembic environment for the store, driven programmatically by ``engine.migrate``.

There is no ``alembic.ini``: ``engine.alembic_config()`` builds the ``Config`` in code
and passes an open, already-begun synchronous ``Connection`` in
``config.attributes["connection"]`` (``AsyncConnection.run_sync``). Alembic therefore
runs inside the caller's transaction (which on PostgreSQL also holds the migration
advisory lock) and never commits by itself. Offline (``--sql``) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from turnout.control.store.tables import metadata

VERSION_TABLE = "turnout_schema_version"


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "the store's migrations run through turnout.control.store.engine.migrate()"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the store's migrations do not support offline (--sql) mode")
run_migrations_online()
