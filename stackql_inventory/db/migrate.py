"""Run Alembic migrations programmatically (start-up, tests, `python -m stackql_inventory.db.migrate`)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
# Key of the advisory lock held while migrating (any constant unique to this app).
MIGRATION_LOCK_KEY = 0x5743_6C49  # "WCli"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine | None = None, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent; concurrent callers serialise on a lock)."""
    from stackql_inventory.db.engine import get_engine, unreachable_error

    if engine is None:
        engine = get_engine()
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    except sa.exc.OperationalError as e:
        raise unreachable_error(e) from e
    log.info("migrations at %s", revision)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    """Step the schema back to `revision` (inventory data in stackql_inventory is kept)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": "stackql_app"})
        return ctx.get_current_revision()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    upgrade()
