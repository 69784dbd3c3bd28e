"""A real PostgreSQL 16 (pgserver) for the test session, with a migrated template database."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

TEMPLATE_DB = "stackql_template"


def sa_url(libpq_uri: str) -> str:
    return libpq_uri.replace("postgresql://", "postgresql+psycopg2://", 1)


@dataclass
class PgHarness:
    """One embedded server; each test gets its own database cloned from a migrated template (~25 ms)."""

    root: Path
    server: object = None
    _admin: sa.Engine | None = None
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def start(self) -> PgHarness:
        import pgserver

        self.root.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(self.root / "pg", cleanup_mode="delete")
        self._admin = sa.create_engine(sa_url(self.server.get_uri()), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
            c.execute(sa.text(f"CREATE DATABASE {TEMPLATE_DB}"))
        from stackql_inventory.db import migrate

        tmpl = sa.create_engine(self.url(TEMPLATE_DB))
        migrate.upgrade(tmpl)
        tmpl.dispose()
        return self

    def uri(self, database: str = "postgres") -> str:
        """libpq URI (unix socket) of `database`."""
        return self.server.get_uri(database)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database`."""
        return sa_url(self.uri(database))

    def create_database(self, *, template: str | None = TEMPLATE_DB) -> str:
        """A fresh database (migrated when cloned from the template); returns its name."""
        name = f"t_{os.getpid()}_{next(self._counter)}"
        with self._admin.connect() as c:
            if template:
                c.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {template}"))
            else:
                c.execute(sa.text(f"CREATE DATABASE {name}"))
        return name

    def drop_database(self, name: str) -> None:
        with self._admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        if self.server is not None:
            self.server.cleanup()
