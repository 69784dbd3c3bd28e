"""Alembic owns the schema: upgrade creates everything, is idempotent, concurrent-safe and reversible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from stackql_inventory.db import migrate
from tests.support.postgres import PgHarness

ROOT = Path(__file__).resolve().parents[1]
APP_TABLES = {"queries", "schedules", "provider_config", "runs", "query_history", "alembic_version"}


def _tables(engine: sa.Engine, schema: str) -> set[str]:
    return set(sa.inspect(engine).get_table_names(schema=schema))


def _schemas(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_schema_names())


def test_first_revision_creates_both_schemas_and_all_tables(pg: PgHarness) -> None:
    name = pg.create_database(template=None)
    engine = sa.create_engine(pg.url(name))
    try:
        migrate.upgrade(engine)
        assert {"stackql_app", "stackql_inventory"} <= _schemas(engine)
        assert _tables(engine, "stackql_app") == APP_TABLES
        assert migrate.current(engine) is not None
        migrate.upgrade(engine)  # idempotent
    finally:
        engine.dispose()
        pg.drop_database(name)


def test_downgrade_base_then_upgrade_head(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.kept (id int)"))
        c.execute(sa.text("INSERT INTO stackql_inventory.kept VALUES (1)"))
    migrate.downgrade(db, "base")
    assert _tables(db, "stackql_app") == {"alembic_version"}
    assert migrate.current(db) is None
    migrate.upgrade(db)
    assert _tables(db, "stackql_app") == APP_TABLES
    with db.connect() as c:  # inventory data survives a downgrade
        assert c.execute(sa.text("SELECT count(*) FROM stackql_inventory.kept")).scalar() == 1


def test_two_processes_migrating_at_once(pg: PgHarness) -> None:
    name = pg.create_database(template=None)
    code = (
        "import sqlalchemy as sa, sys\n"
        "from stackql_inventory.db import migrate\n"
        "migrate.upgrade(sa.create_engine(sys.argv[1]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg.url(name)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    engine = sa.create_engine(pg.url(name))
    try:
        assert all(rc == 0 for rc, _ in results), [err[-2000:] for _, err in results]
        assert _tables(engine, "stackql_app") == APP_TABLES
    finally:
        engine.dispose()
        pg.drop_database(name)


def test_models_match_the_migrations(db: sa.Engine) -> None:
    """Autogenerate finds nothing to do: the SQLModel tables and the revisions agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from stackql_inventory.db import models  # noqa: F401

    with db.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_schemas": True, "version_table_schema": "stackql_app",
                                                     "include_name": _include_app_schema})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def _include_app_schema(name, type_, parent_names):  # noqa: ANN001
    if type_ == "schema":
        return name == "stackql_app"
    return True
