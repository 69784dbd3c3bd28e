"""The Lakebase connection factory against a real PostgreSQL that demands a minted token, behind TLS.

See tests/support/platform.py for the stand-in: psycopg2 -> TLS front -> PostgreSQL 16 (RADIUS login) ->
FakeDatabricks' ledger of minted tokens. The engine and the SDK are the real ones.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.db import engine as db_engine
from stackql_inventory.db import migrate
from stackql_inventory.services import health
from stackql_inventory.services.databricks_client import set_workspace_client
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.support.platform import APP_ROLE, ENDPOINT, INSTANCE, LakebaseStandIn

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lakebase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakebaseStandIn]:
    stand_in = LakebaseStandIn(tmp_path_factory.mktemp("lakebase")).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def database(lakebase: LakebaseStandIn) -> str:
    return lakebase.fresh_database()


def _settings(lakebase: LakebaseStandIn, database: str, **extra: str) -> Settings:
    return Settings(_env_file=None, **lakebase.env(PGDATABASE=database, **extra))


def _accepted(lakebase: LakebaseStandIn, since: int) -> list[str]:
    return [login.token for login in lakebase.radius.logins[since:] if login.accepted]


def test_each_new_connection_logs_in_with_its_own_fresh_token(lakebase: LakebaseStandIn, database: str) -> None:
    minted_before, logins_before = len(lakebase.fake.minted_tokens), len(lakebase.radius.logins)
    tls_before = lakebase.front.tls_sessions
    engine = db_engine.create_db_engine(_settings(lakebase, database), client=lakebase.fake.client())
    try:
        assert engine.url.password is None and engine.url.query["sslmode"] == "require"
        conns = [engine.connect() for _ in range(3)]  # three at once: three logins
        users = {c.execute(sa.text("SELECT current_user")).scalar() for c in conns}
        for c in conns:
            c.close()
        new_tokens = lakebase.fake.minted_tokens[minted_before:]
        assert users == {APP_ROLE}
        assert len(new_tokens) == 3 and len(set(new_tokens)) == 3
        assert _accepted(lakebase, logins_before) == new_tokens  # each login used the token minted for it
        assert lakebase.fake.token not in [login.token for login in lakebase.radius.logins]  # never the PAT
        assert lakebase.front.tls_sessions - tls_before == 3
        requests = lakebase.fake.requests_to("/api/2.0/postgres/credentials")[-3:]
        assert [r.json for r in requests] == [{"endpoint": ENDPOINT}] * 3

        with engine.connect() as c:  # a pooled connection is reused: no new login, no new token
            c.execute(sa.text("SELECT 1"))
        assert len(lakebase.fake.minted_tokens) == minted_before + 3
    finally:
        engine.dispose()


def test_the_pool_recycles_connections_and_logs_in_again(lakebase: LakebaseStandIn, database: str) -> None:
    settings = _settings(lakebase, database, STACKQL_INVENTORY_DB_POOL_RECYCLE="1")
    engine = db_engine.create_db_engine(settings, client=lakebase.fake.client())
    try:
        with engine.connect() as c:
            first_pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT pg_backend_pid()")).scalar() == first_pid  # young: reused
        minted = len(lakebase.fake.minted_tokens)
        time.sleep(1.2)
        with engine.connect() as c:
            second_pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        assert second_pid != first_pid
        assert len(lakebase.fake.minted_tokens) == minted + 1  # the replacement logged in with a new token
        # The old session is gone (its backend exits just after the pool closes the socket).
        deadline = time.monotonic() + 5
        while first_pid in lakebase.backend_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_pid not in lakebase.backend_pids()
    finally:
        engine.dispose()


@pytest.mark.parametrize(("configured", "used"), [(2700, 2700), (1200, 1200), (3000, 3000), (3600, 2700),
                                                  (7200, 2700), (0, 2700)])
def test_lakebase_recycle_stays_well_below_the_token_hour(configured: int, used: int,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, PGHOST="h", PGUSER="u", LAKEBASE_ENDPOINT=ENDPOINT,
                        STACKQL_INVENTORY_DB_POOL_RECYCLE=str(configured))
    with caplog.at_level(logging.WARNING):
        assert db_engine.pool_recycle_s(settings) == used
    assert ("STACKQL_INVENTORY_DB_POOL_RECYCLE" in caplog.text) is (used != configured)
    # Elsewhere (DATABASE_URL, embedded) the setting is taken as given.
    assert db_engine.pool_recycle_s(Settings(_env_file=None, DATABASE_URL="postgresql://u@h/d",
                                             STACKQL_INVENTORY_DB_POOL_RECYCLE=str(configured))) == configured


def test_expiry_is_checked_at_login_only_and_new_connections_mint_again(lakebase: LakebaseStandIn,
                                                                         database: str) -> None:
    engine = db_engine.create_db_engine(_settings(lakebase, database), client=lakebase.fake.client())
    try:
        open_conn = engine.connect()
        first = lakebase.fake.minted_tokens[-1]
        lakebase.expire(first)
        assert open_conn.execute(sa.text("SELECT 1")).scalar() == 1  # an open session outlives its token
        with pytest.raises(psycopg2.OperationalError, match="authentication failed"):  # but cannot log in again
            psycopg2.connect(host="127.0.0.1", port=lakebase.front.port, dbname=database, user=APP_ROLE,
                             password=first, sslmode="require", connect_timeout=5)
        with engine.connect() as second:  # the pool's next connection gets a new token and gets in
            assert second.execute(sa.text("SELECT current_user")).scalar() == APP_ROLE
        assert lakebase.fake.minted_tokens[-1] != first
        open_conn.close()
    finally:
        engine.dispose()


def test_provisioned_instance_is_the_fallback(lakebase: LakebaseStandIn, database: str) -> None:
    env = lakebase.env(PGDATABASE=database)
    del env["LAKEBASE_ENDPOINT"]
    settings = Settings(_env_file=None, LAKEBASE_INSTANCE=INSTANCE, **env)
    before = len(lakebase.fake.requests_to("/api/2.0/database/credentials"))
    engine = db_engine.create_db_engine(settings, client=lakebase.fake.client())
    try:
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT current_user")).scalar() == APP_ROLE
        bodies = [r.json for r in lakebase.fake.requests_to("/api/2.0/database/credentials")[before:]]
        assert [b["instance_names"] for b in bodies] == [[INSTANCE]]
    finally:
        engine.dispose()


def test_a_job_finds_host_and_role_from_the_endpoint_and_migrates(lakebase: LakebaseStandIn, database: str) -> None:
    """In a job only the endpoint is known: host from the endpoint, role = the run-as identity."""
    settings = Settings(_env_file=None, LAKEBASE_ENDPOINT=ENDPOINT, PGPORT=str(lakebase.front.port),
                        PGDATABASE=database)
    assert settings.uses_lakebase and not settings.uses_embedded_db
    engine = db_engine.create_db_engine(settings, client=lakebase.fake.client())
    try:
        assert (engine.url.host, engine.url.username) == ("127.0.0.1", APP_ROLE)
        migrate.upgrade(engine)
        with engine.connect() as c:
            owner = c.execute(sa.text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'stackql_app'"))
            assert owner.scalar().strip('"') == APP_ROLE
    finally:
        engine.dispose()


def test_a_separate_process_connects_the_same_way(lakebase: LakebaseStandIn, database: str) -> None:
    """The runner's situation: a new process with the SDK's own auth, only Lakebase names in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LAKEBASE_", "DATABRICKS_", "DATABASE_URL"))}
    env.update({"DATABRICKS_HOST": lakebase.fake.url, "DATABRICKS_TOKEN": lakebase.fake.token,
                "LAKEBASE_ENDPOINT": ENDPOINT, "PGPORT": str(lakebase.front.port), "PGDATABASE": database})
    minted = len(lakebase.fake.minted_tokens)
    proc = subprocess.run([sys.executable, "-m", "stackql_inventory.db.migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(lakebase.fake.minted_tokens) > minted
    check = sa.create_engine(lakebase.admin.url.set(database=database))
    with check.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = 'stackql_app'")).scalar() == 1
    check.dispose()
    assert lakebase.fake.token not in proc.stdout + proc.stderr


def test_tls_is_never_weakened(lakebase: LakebaseStandIn, database: str) -> None:
    settings = _settings(lakebase, database, PGSSLMODE="disable")
    refused = lakebase.front.plaintext_refused
    engine = db_engine.create_db_engine(settings, client=lakebase.fake.client())
    try:
        assert engine.url.query["sslmode"] == "require"
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
        assert lakebase.front.plaintext_refused == refused
    finally:
        engine.dispose()


# --- failures as the user sees them -------------------------------------------------------------
@pytest.fixture
def app_on_lakebase(lakebase: LakebaseStandIn, database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-wide settings, client and engine configured as inside the App."""
    for name, value in lakebase.env(PGDATABASE=database).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    set_workspace_client(lakebase.fake.client())
    db_engine.set_engine(None)
    yield
    db_engine.set_engine(None)
    set_workspace_client(None)
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "PERMISSION_DENIED", "CAN_CONNECT_AND_CREATE"),
        (404, "NOT_FOUND", "does not exist. Check LAKEBASE_ENDPOINT"),
        (500, "INTERNAL_ERROR", "Could not get a Lakebase login."),
    ],
)
def test_minting_failure_is_a_clear_database_error_and_banner(lakebase: LakebaseStandIn, app_on_lakebase: None,
                                                              status: int, code: str, expected: str) -> None:
    lakebase.fake.fail_next("/api/2.0/postgres/credentials", status, code, "injected", times=2)
    with pytest.raises(UserFacingError) as info:
        with db_engine.session_scope() as s:
            s.execute(sa.text("SELECT 1"))
    banner = health.database_problem()  # what the page shows
    assert info.value.kind is ErrorKind.DATABASE
    for message in (info.value.message, banner):
        assert "Lakebase" in message and expected in message and ENDPOINT in message
        assert lakebase.fake.token not in message
    assert health.database_problem() == ""  # the next connection mints again and gets through


def test_a_role_lakebase_does_not_know_gets_a_hint(lakebase: LakebaseStandIn, app_on_lakebase: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGUSER", "someone-else")  # tokens are minted for the app's identity, not this role
    get_settings.cache_clear()
    db_engine.set_engine(None)
    banner = health.database_problem()
    assert "Lakebase refused the app's OAuth login" in banner and "CAN_CONNECT_AND_CREATE" in banner
    assert not any(t in banner for t in lakebase.fake.minted_tokens)
