"""Database engine and sessions: embedded PostgreSQL, DATABASE_URL, or Lakebase with OAuth tokens."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: sa.Engine | None = None
# Mints a Lakebase password per new connection; set by `configure_password_provider` (tests, Lakebase).
_password_provider: Callable[[], str] | None = None

CONNECT_TIMEOUT_S = 5


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


def stop_embedded(settings: Settings) -> None:
    """Stop the embedded PostgreSQL if it runs (fast shutdown)."""
    import os

    from pgserver import _commands

    pgdata = embedded_pgdata(settings)
    if not (pgdata / "postmaster.pid").exists():
        return
    # pgserver runs postgres as its own system user when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        _commands.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user, timeout=30)
    except Exception:  # already stopped, or stopped by Ctrl+C reaching it first
        log.info("embedded postgres stop: nothing to stop pgdata=%s", pgdata)


def database_url(settings: Settings) -> URL:
    """The SQLAlchemy URL for this configuration (password-free for Lakebase)."""
    if settings.database_url is not None:
        raw = settings.database_url.get_secret_value()
        url = make_url(raw.replace("postgres://", "postgresql://", 1))
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg2")
        return url
    if settings.pghost:
        return URL.create(
            "postgresql+psycopg2",
            username=settings.pguser,
            host=settings.pghost,
            port=settings.pgport,
            database=settings.pgdatabase or "databricks_postgres",
            query={"sslmode": settings.pgsslmode, "application_name": settings.pgappname},
        )
    uri = start_embedded(settings)
    url = make_url(uri)
    return url.set(drivername="postgresql+psycopg2", password=None)


def describe_target(settings: Settings) -> str:
    """Where the database is, for messages (never includes a password)."""
    if settings.database_url is not None:
        url = make_url(settings.database_url.get_secret_value().replace("postgres://", "postgresql://", 1))
        return f"DATABASE_URL ({url.host or 'local socket'}:{url.port or 5432}/{url.database})"
    if settings.pghost:
        return f"Lakebase ({settings.pghost}:{settings.pgport}/{settings.pgdatabase})"
    return f"the embedded PostgreSQL under {embedded_pgdata(settings)}"


def configure_password_provider(provider: Callable[[], str] | None) -> None:
    """Set the function that gives each new connection its password (Lakebase OAuth tokens)."""
    global _password_provider
    _password_provider = provider


def create_db_engine(settings: Settings) -> sa.Engine:
    """Build a pooled engine for `settings`; Lakebase connections get a fresh token each."""
    url = database_url(settings)
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=settings.db_pool_recycle_s,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    if settings.uses_lakebase:
        _install_lakebase_tokens(engine, settings)
    return engine


def _install_lakebase_tokens(engine: sa.Engine, settings: Settings) -> None:
    @sa.event.listens_for(engine, "do_connect")
    def _mint_token(dialect, conn_rec, cargs, cparams):  # noqa: ANN001 - SQLAlchemy hook
        provider = _password_provider or _default_lakebase_provider(settings)
        cparams["password"] = provider()


def _default_lakebase_provider(settings: Settings) -> Callable[[], str]:
    global _password_provider
    from stackql_inventory.services import lakebase
    from stackql_inventory.services.databricks_client import workspace_client

    creds = lakebase.LakebaseCredentials(
        workspace_client(settings), endpoint=settings.lakebase_endpoint, instance=settings.lakebase_instance
    )
    _password_provider = creds.password
    return _password_provider


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
