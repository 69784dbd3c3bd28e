"""Helpers for runner and inventory-writer tests: the stand-in stackql, saved queries, schedules, credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import ProviderConfig, SavedQuery, Schedule
from tests.fakes.install import install_fake_stackql

ROOT = Path(__file__).resolve().parents[2]

BULK_COLUMNS = ("item_id", "name", "category", "quantity", "price", "weight_kg", "is_active", "in_stock",
                "created_at", "updated_at", "attributes", "tags")


def bulk_query(count: int, *, extra_where: str = "", columns: tuple[str, ...] = BULK_COLUMNS) -> str:
    """A stand-in query returning `count` synthetic items (12 typed columns by default)."""
    where = f"count = {count}" + (f" AND {extra_where}" if extra_where else "")
    return f"SELECT {', '.join(columns)} FROM synthetic.bulk.items WHERE {where}"


@pytest.fixture
def fake_stackql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in binary as this process's stackql (STACKQL_DOWNLOAD_DIR), engine reset around the test."""
    from stackql_inventory.services import engine

    download_dir = tmp_path / "stackql-bin"
    install_fake_stackql(download_dir)
    monkeypatch.setenv("STACKQL_DOWNLOAD_DIR", str(download_dir))
    get_settings.cache_clear()
    engine.reset()
    yield download_dir
    engine.reset()
    get_settings.cache_clear()


def add_query(text: str, *, name: str = "items", provider: str | None = "synthetic", owner: str = "tester") -> int:
    with session_scope() as s:
        q = SavedQuery(name=name, query_text=text, provider=provider, created_by=owner)
        s.add(q)
        s.flush()
        return int(q.id or 0)


def set_query_text(query_id: int, text: str) -> None:
    with session_scope() as s:
        q = s.get(SavedQuery, query_id)
        assert q is not None
        q.query_text = text
        s.add(q)


def add_schedule(query_id: int, table: str, *, mode: str = "replace", keys: tuple[str, ...] = (),
                 schema: str = "stackql_inventory", cron: str = "0 * * * *", active: bool = True) -> int:
    with session_scope() as s:
        sch = Schedule(query_id=query_id, cron_expression=cron, target_schema=schema, target_table=table,
                       write_mode=mode, key_columns=list(keys), is_active=active, created_by="tester")
        s.add(sch)
        s.flush()
        return int(sch.id or 0)


def map_credential(provider: str, env_var: str, value: str, *, scope: str = "stackql-inventory",
                   key: str | None = None) -> None:
    """A provider mapping plus its secret in the local secrets backend."""
    from stackql_inventory.services import secrets

    key = key or env_var.lower().replace("_", "-")
    secrets.backend_for().put(scope, key, value)
    with session_scope() as s:
        s.add(ProviderConfig(provider=provider, env_var_name=env_var, secret_scope=scope, secret_key=key,
                             created_by="tester"))


def rows(db: sa.Engine, sql: str, **params: Any) -> list[tuple]:
    with db.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(sql), params)]


def scalar(db: sa.Engine, sql: str, **params: Any) -> Any:
    with db.connect() as c:
        return c.execute(sa.text(sql), params).scalar()


def snapshot(db: sa.Engine, table: str, schema: str = "stackql_inventory") -> list[tuple]:
    """Every row of a table (ctid order is not stable: sorted text form), for before/after comparisons."""
    with db.connect() as c:
        found = c.execute(sa.text(
            f'SELECT t::text FROM "{schema}"."{table}" t ORDER BY 1')).scalars().all()
    return list(found)


def runner_env(db_uri: str, download_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for `python -m runner` children: this test's database, data dir and stand-in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "LAKEBASE_", "DATABRICKS_"))}
    env.update({
        "DATABASE_URL": db_uri,
        "STACKQL_INVENTORY_DATA_DIR": str(get_settings().data_dir),
        "STACKQL_DOWNLOAD_DIR": str(download_dir),
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def start_runner(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_runner(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)
