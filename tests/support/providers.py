"""Fixtures and helpers for the provider tests: a per-test data dir + recording stackql stand-in, identities."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from stackql_inventory.services import engine
from stackql_inventory.services.identity import Identity
from tests.fakes.install import install_fake_stackql, read_invocations

EDITOR = Identity(user="ed@example.com", display_name="Ed Itor", source="proxy")
READER = Identity(user="rita@example.com", display_name="Rita Reader", source="proxy")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class ProviderWorld:
    """Where this test's local secrets and stackql stand-in live."""

    data_dir: Path
    stackql_dir: Path

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    def invocations(self) -> list[dict]:
        """Every stackql call so far: argv, env var names, sha256 of credential values."""
        return read_invocations(self.stackql_dir)

    def queries(self) -> list[dict]:
        """The `stackql exec` calls (queries), leaving out `--version` probes and `srv` starts."""
        return [c for c in self.invocations() if c["argv"][:1] == ["exec"]]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderWorld]:
    """A fresh data dir (local secrets, stackql approot) and the recording stand-in as the app's stackql."""
    w = ProviderWorld(tmp_path / "data", tmp_path / "stackql-bin")
    install_fake_stackql(w.stackql_dir, record=True)
    monkeypatch.setenv("STACKQL_INVENTORY_DATA_DIR", str(w.data_dir))
    monkeypatch.setenv("STACKQL_DOWNLOAD_DIR", str(w.stackql_dir))
    get_settings.cache_clear()
    engine.reset()
    yield w
    engine.reset()
    get_settings.cache_clear()


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Set an app setting's env var for this test (the settings cache is cleared before and after)."""

    def set_(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield set_
    get_settings.cache_clear()  # runs before monkeypatch restores the env: the next read sees the old values


def dump_app_schema(conn_engine: sa.Engine) -> str:
    """Every row of every table in `stackql_app`, as text (to search for values that must not be there)."""
    parts: list[str] = []
    with conn_engine.connect() as c:
        tables = c.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stackql_app' "
            "ORDER BY table_name")).scalars().all()
        for table in tables:
            rows = c.execute(sa.text(f'SELECT * FROM stackql_app."{table}"')).all()
            parts.append(f"## {table}\n" + "\n".join(repr(tuple(r)) for r in rows))
    assert tables, "no stackql_app tables found: wrong database?"
    return "\n".join(parts)
