"""Database engine and sessions: embedded PostgreSQL, DATABASE_URL, or Lakebase with OAuth tokens."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: sa.Engine | None = None
# Overrides how a new Lakebase connection gets its password (`configure_password_provider`); None = mint.
_password_provider: Callable[[], str] | None = None

CONNECT_TIMEOUT_S = 5
# Lakebase tokens last an hour and are checked only at login; connections are replaced well before that,
# so no connection outlives the credential it logged in with by much (and scale-to-zero hang-ups are caught).
LAKEBASE_DEFAULT_RECYCLE_S = 2700
LAKEBASE_MAX_RECYCLE_S = 3000


def embedded_pgdata(settings: Settings) -> Path:
    return settings.data_dir / "pg"


def start_embedded(settings: Settings) -> str:
    """Start (or attach to) the embedded PostgreSQL 16 under the data dir; return its libpq URI.

    The server keeps running when this process exits: `serve` stops it on Ctrl+C, and other
    processes (the runner) attach to the same server.
    """
    try:
        import pgserver  # imported lazily: starting it is the only thing it is for
    except ImportError as e:  # pragma: no cover - pinned in requirements
        raise UserFacingError(
            "The embedded PostgreSQL (pgserver) is not installed. Run `make run`, or set DATABASE_URL.",
            ErrorKind.CONFIG,
        ) from e
    pgdata = embedded_pgdata(settings)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        # pgserver caches one handle per process; restart the server if it was stopped since.
        # (A stopped server can linger as our zombie child, so trust postmaster.pid, not the process.)
        if not (pgdata / "postmaster.pid").exists():
            with server._lock:
                server.ensure_postgres_running()
    except Exception as e:
        log.exception("embedded postgres failed to start pgdata=%s", pgdata)
        raise UserFacingError(
            f"The embedded PostgreSQL under {pgdata} did not start ({type(e).__name__}). "
            f"See {pgdata / 'log'}, or set DATABASE_URL to use another server.",
            ErrorKind.DATABASE,
        ) from e
    return server.get_uri()


def stop_embedded(settings: Settings, timeout_s: float = 30) -> None:
    """Stop the embedded PostgreSQL if it runs: fast shutdown, immediate if that takes over `timeout_s`."""
    import os
    import subprocess

    from pgserver import _commands

    pgdata = embedded_pgdata(settings)
    if not (pgdata / "postmaster.pid").exists():
        return
    # pgserver runs postgres as its own system user when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    wait = max(1, int(timeout_s))
    try:
        _commands.pg_ctl(["-m", "fast", "-w", "-t", str(wait), "stop"], pgdata=pgdata, user=user,
                         timeout=wait + 2)
    except subprocess.TimeoutExpired:
        _commands.pg_ctl(["-m", "immediate", "-w", "-t", "5", "stop"], pgdata=pgdata, user=user, timeout=7)
    except Exception:  # already stopped, or stopped by Ctrl+C reaching it first
        log.info("embedded postgres stop: nothing to stop pgdata=%s", pgdata)


def database_url(settings: Settings, client_factory: Callable[[], WorkspaceClient] | None = None) -> URL:
    """The SQLAlchemy URL for this configuration (password-free for Lakebase).

    Lakebase needs the Databricks client only when PGHOST or PGUSER is missing (a job knows just the
    endpoint): then the host comes from the endpoint/instance and the user from the run-as identity.
    """
    if settings.database_url is not None:
        raw = settings.database_url.get_secret_value()
        url = make_url(raw.replace("postgres://", "postgresql://", 1))
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg2")
        return url
    if settings.uses_lakebase:
        from stackql_inventory.services import lakebase

        if settings.pghost and settings.pguser:
            params = lakebase.lakebase_connect_params(settings, None)  # everything is in PG*: no lookups
        else:
            params = lakebase.lakebase_connect_params(settings, (client_factory or _workspace_client)())
        return URL.create(
            "postgresql+psycopg2",
            username=params["user"],
            host=params["host"],
            port=params["port"],
            database=params["dbname"],
            query={"sslmode": params["sslmode"], "application_name": params["application_name"]},
        )
    uri = start_embedded(settings)
    url = make_url(uri)
    return url.set(drivername="postgresql+psycopg2", password=None)


def describe_target(settings: Settings) -> str:
    """Where the database is, for messages (never includes a password)."""
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value().replace("postgres://", "postgresql://", 1))
        return f"DATABASE_URL ({url.host or 'local socket'}:{url.port or 5432}/{url.database})"
    if settings.uses_lakebase:
        where = settings.pghost or settings.lakebase_endpoint or settings.lakebase_instance
        return f"Lakebase ({where}:{settings.pgport}/{settings.pgdatabase or 'databricks_postgres'})"
    return f"the embedded PostgreSQL under {embedded_pgdata(settings)}"


def configure_password_provider(provider: Callable[[], str] | None) -> None:
    """Override how new Lakebase connections get their password (None: mint through databricks-sdk)."""
    global _password_provider
    _password_provider = provider


def pool_recycle_s(settings: Settings) -> int:
    """Seconds a pooled connection lives. For Lakebase, capped well below the token's hour."""
    recycle = settings.db_pool_recycle_s
    if settings.uses_lakebase and not 0 < recycle <= LAKEBASE_MAX_RECYCLE_S:
        log.warning("STACKQL_INVENTORY_DB_POOL_RECYCLE=%s is not within 1-%s s for Lakebase; using %s s",
                    recycle, LAKEBASE_MAX_RECYCLE_S, LAKEBASE_DEFAULT_RECYCLE_S)
        return LAKEBASE_DEFAULT_RECYCLE_S
    return recycle


def create_db_engine(settings: Settings, *, client: WorkspaceClient | None = None) -> sa.Engine:
    """Build a pooled engine for `settings`; each new Lakebase connection logs in with a freshly minted token.

    `client` is the Databricks client that looks up the host/user and mints tokens (default: the
    process-wide one, built from DATABRICKS_* or the App's / job's own identity).
    """
    lakebase_client = (lambda: client) if client is not None else _workspace_client
    url = database_url(settings, lakebase_client)
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,  # Lakebase scales to zero and closes idle connections: test before use
        pool_recycle=pool_recycle_s(settings),
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    if settings.uses_lakebase:
        _install_lakebase_tokens(engine, settings, lakebase_client)
    return engine


def _install_lakebase_tokens(engine: sa.Engine, settings: Settings,
                             client_factory: Callable[[], WorkspaceClient]) -> None:
    """Give every new connection of `engine` a token minted for it (never the workspace token)."""
    from stackql_inventory.services.lakebase import LakebaseCredentials

    state: dict[str, LakebaseCredentials] = {}
    state_lock = threading.Lock()

    def credentials() -> LakebaseCredentials:
        with state_lock:
            if "creds" not in state:
                state["creds"] = LakebaseCredentials.from_settings(settings, client_factory())
            return state["creds"]

    @sa.event.listens_for(engine, "do_connect")
    def _mint_token(dialect, conn_rec, cargs, cparams):  # noqa: ANN001 - SQLAlchemy hook
        if _password_provider is not None:
            cparams["password"] = _password_provider()
            return
        creds = credentials()
        cparams["password"] = creds.password()
        # Lakebase checks the token only at login; remember when this connection's expires, for diagnostics.
        conn_rec.info["lakebase_token_expires_at"] = creds.expires_at


def _workspace_client() -> WorkspaceClient:
    from stackql_inventory.services.databricks_client import workspace_client

    return workspace_client()


def get_engine() -> sa.Engine:
    """The process-wide engine (created on first use, never at import)."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = create_db_engine(get_settings())
        return _engine


def set_engine(engine: sa.Engine | None) -> None:
    """Replace the process-wide engine (tests point it at their own database)."""
    global _engine
    with _lock:
        if _engine is not None and _engine is not engine:
            _engine.dispose()
        _engine = engine


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error; DB failures become user-facing."""
    try:
        session = Session(get_engine(), expire_on_commit=False)
    except UserFacingError:
        raise
    try:
        yield session
        session.commit()
    except sa.exc.OperationalError as e:
        session.rollback()
        raise unreachable_error(e) from e
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def unreachable_error(exc: BaseException) -> UserFacingError:
    """A clear message for a database that cannot be reached (no secrets, no traceback)."""
    settings = get_settings()
    first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    from stackql_inventory.services.errors import redact

    secrets = [settings.database_url.get_secret_value()] if settings.database_url else []
    url_pw = None
    if settings.database_url is not None:
        url_pw = make_url(settings.database_url.get_secret_value().replace("postgres://", "postgresql://", 1)).password
    first_line = redact(first_line, [*secrets, url_pw])
    if settings.uses_lakebase and re.search(r'authentication failed|role ".*" does not exist', first_line):
        return UserFacingError(
            f"Lakebase refused the app's OAuth login: {describe_target(settings)}. {first_line}. Add the database "
            "to the app as a resource with CAN_CONNECT_AND_CREATE (that creates the Postgres role of the app's "
            "service principal), or create that role for this identity, then restart.",
            ErrorKind.DATABASE,
        )
    return UserFacingError(
        f"Cannot reach the database: {describe_target(settings)}. {first_line}. "
        "Check that it is running, or set DATABASE_URL (or the Lakebase PG* variables) and restart.",
        ErrorKind.DATABASE,
    )


def ping() -> None:
    """Raise a user-facing DATABASE error unless `SELECT 1` succeeds."""
    try:
        with get_engine().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except UserFacingError:
        raise
    except sa.exc.SQLAlchemyError as e:
        raise unreachable_error(e) from e
