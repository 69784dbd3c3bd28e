"""Alembic environment: migrates the app database under an advisory lock (safe for concurrent starts)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from stackql_inventory.db import models  # noqa: F401 - registers the tables on SQLModel.metadata
from stackql_inventory.db.migrate import MIGRATION_LOCK_KEY
from sqlmodel import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=models.APP_SCHEMA,
        include_schemas=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        # Two processes starting at once: the second waits here, then finds the schema at head.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {models.APP_SCHEMA}"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from stackql_inventory.db.engine import get_engine

    with get_engine().connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run against a database.")
run_migrations_online()
