"""Database selection: embedded PostgreSQL kept across restarts, DATABASE_URL, clear errors when unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from stackql_inventory.config import Settings
from stackql_inventory.db import engine as db_engine
from stackql_inventory.services import health
from stackql_inventory.services.errors import ErrorKind, UserFacingError


def test_embedded_postgres_starts_and_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    try:
        engine = db_engine.create_db_engine(settings)
        with engine.begin() as c:
            version = c.execute(sa.text("SHOW server_version")).scalar()
            c.execute(sa.text("CREATE TABLE kept (v text)"))
            c.execute(sa.text("INSERT INTO kept VALUES ('still here')"))
        engine.dispose()
        assert version.startswith("16")
        assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()

        db_engine.stop_embedded(settings)
        assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()

        engine = db_engine.create_db_engine(settings)  # a restart reuses the same data
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT v FROM kept")).scalar() == "still here"
        engine.dispose()
    finally:
        db_engine.stop_embedded(settings)


def test_database_url_wins_over_the_embedded_server(pg, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None, DATABASE_URL=pg.uri())
    url = db_engine.database_url(settings)
    assert url.drivername == "postgresql+psycopg2"
    assert not (settings.data_dir / "pg").exists()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://inventory:hunter2-secret@127.0.0.1:1/inventory",
        "postgres://inventory:hunter2-secret@127.0.0.1:1/inventory",
    ],
)
def test_unreachable_database_is_a_clear_message_without_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackql_inventory.config import get_settings

    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db_engine.set_engine(None)
    try:
        problem = health.database_problem()
        with pytest.raises(UserFacingError) as err:
            with db_engine.session_scope() as s:
                s.execute(sa.text("SELECT 1"))
    finally:
        db_engine.set_engine(None)
        get_settings.cache_clear()
    assert err.value.kind is ErrorKind.DATABASE
    for message in (problem, err.value.message):
        assert "Cannot reach the database" in message
        assert "DATABASE_URL" in message
        assert "hunter2" not in message


def test_lakebase_url_has_no_password_and_requires_tls() -> None:
    settings = Settings(_env_file=None, PGHOST="ep-x.database.cloud.databricks.com", PGDATABASE="inv",
                        PGUSER="0000-sp-id", LAKEBASE_ENDPOINT="projects/p/branches/b/endpoints/e")
    url = db_engine.database_url(settings)
    assert url.password is None
    assert url.query["sslmode"] == "require"
    assert url.host == "ep-x.database.cloud.databricks.com"
