"""Inventory fixtures in the runner's table layout (replace / append / SCD2 history) plus ledger rows.

The runner (branch `runner`) writes `stackql_inventory` tables; these helpers create the same layout
directly so the browser can be tested without running stackql: every row has `_stackql_run_id` and
`_stackql_collected_at`; `history` tables add `_key_hash`, `_row_hash`, `_valid_from`, `_valid_to`,
`_first_seen`, `_last_seen`, `_is_deleted`, `_closed_by_run_id` with tombstones for vanished resources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

HISTORY_META = """
    _stackql_run_id bigint NOT NULL, _stackql_collected_at timestamptz NOT NULL, _key_hash text NOT NULL,
    _row_hash text NOT NULL, _valid_from timestamptz NOT NULL, _valid_to timestamptz, _first_seen timestamptz NOT NULL,
    _last_seen timestamptz NOT NULL, _is_deleted boolean NOT NULL DEFAULT false, _closed_by_run_id bigint
"""


def q(name: str) -> str:
    return f'stackql_inventory."{name}"'


def add_query(c: sa.Connection, name: str, provider: str = "aws", text: str = "SELECT 1") -> int:
    return int(c.execute(sa.text(
        "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) VALUES (:n, :t, :p, 'tester') "
        "RETURNING id"), {"n": name, "t": text, "p": provider}).scalar_one())


def add_schedule(c: sa.Connection, query_id: int, table: str, *, cron: str = "0 * * * *", mode: str = "replace",
                 keys: Sequence[str] = (), active: bool = True, timezone: str = "UTC") -> int:
    return int(c.execute(sa.text(
        "INSERT INTO stackql_app.schedules (query_id, cron_expression, timezone, target_table, write_mode, key_columns,"
        " is_active) VALUES (:q, :c, :tz, :t, :m, :k, :a) RETURNING id"),
        {"q": query_id, "c": cron, "tz": timezone, "t": table, "m": mode, "k": list(keys), "a": active}).scalar_one())


def add_run(c: sa.Connection, table: str, *, status: str = "success", started_at: datetime = T0,
            duration_s: float = 5.0, rows: int | None = None, mode: str = "replace", schedule_id: int | None = None,
            query_id: int | None = None, error: str | None = None, trigger: str = "schedule") -> int:
    finished = started_at + timedelta(seconds=duration_s) if status in ("success", "failed", "cancelled") else None
    return int(c.execute(sa.text(
        "INSERT INTO stackql_app.runs (schedule_id, query_id, target_schema, target_table, write_mode, trigger, status, started_at,"
        " finished_at, rows_written, duration_s, error_message, created_by)"
        " VALUES (:s, :q, 'stackql_inventory', :t, :m, :tr, :st, :sa, :fa, :r, :d, :e, 'scheduler') RETURNING id"),
        {"s": schedule_id, "q": query_id, "t": table, "m": mode, "tr": trigger, "st": status, "sa": started_at,
         "fa": finished, "r": rows, "d": duration_s if finished else None, "e": error}).scalar_one())


def create_table(c: sa.Connection, name: str, columns: str, *, history: bool = False) -> None:
    meta = HISTORY_META if history else "_stackql_run_id bigint NOT NULL, _stackql_collected_at timestamptz NOT NULL"
    c.execute(sa.text(f"CREATE TABLE {q(name)} ({columns}, {meta})"))


def insert_rows(c: sa.Connection, name: str, rows: Iterable[dict[str, Any]], run_id: int,
                collected_at: datetime = T0) -> None:
    rows = list(rows)
    if not rows:
        return
    cols = list(rows[0])
    c.execute(sa.text(
        f"INSERT INTO {q(name)} ({_cols(cols)}, _stackql_run_id, _stackql_collected_at) "
        f"VALUES ({', '.join(f':{k}' for k in cols)}, :_run, :_at)"),
        [{**r, "_run": run_id, "_at": collected_at} for r in rows])


def _cols(cols: Sequence[str]) -> str:
    return ", ".join(f'"{k}"' for k in cols)


def _hash(value: Any) -> str:
    return hashlib.md5(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def history_run(c: sa.Connection, name: str, rows: list[dict[str, Any]], keys: Sequence[str], run_id: int,
                at: datetime) -> None:
    """Apply one run to an SCD2 history table the way the runner does (open, close, tombstone, touch)."""
    current = {r._key_hash: r for r in c.execute(sa.text(
        f"SELECT ctid, _key_hash, _row_hash FROM {q(name)} WHERE _valid_to IS NULL AND NOT _is_deleted"))}
    seen = set()
    for row in rows:
        kh, rh = _hash([row[k] for k in keys]), _hash(row)
        seen.add(kh)
        old = current.get(kh)
        if old is not None and old._row_hash == rh:
            c.execute(sa.text(f"UPDATE {q(name)} SET _last_seen = :at WHERE _key_hash = :k AND _valid_to IS NULL"),
                      {"at": at, "k": kh})
            continue
        first_seen = at
        if old is not None:
            first_seen = c.execute(sa.text(
                f"UPDATE {q(name)} SET _valid_to = :at, _closed_by_run_id = :r WHERE _key_hash = :k "
                "AND _valid_to IS NULL RETURNING _first_seen"), {"at": at, "r": run_id, "k": kh}).scalar_one()
        cols = list(row)
        c.execute(sa.text(
            f"INSERT INTO {q(name)} ({_cols(cols)}, _stackql_run_id, _stackql_collected_at,"
            " _key_hash, _row_hash, _valid_from, _first_seen, _last_seen, _is_deleted)"
            f" VALUES ({', '.join(f':{k}' for k in cols)}, :_r, :_at, :_kh, :_rh, :_at, :_fs, :_at, false)"),
            {**row, "_r": run_id, "_at": at, "_kh": kh, "_rh": rh, "_fs": first_seen})
    for kh in set(current) - seen:  # vanished: close the version and add a tombstone
        old = c.execute(sa.text(
            f"UPDATE {q(name)} SET _valid_to = :at, _closed_by_run_id = :r WHERE _key_hash = :k AND _valid_to IS NULL "
            "RETURNING *"), {"at": at, "r": run_id, "k": kh}).mappings().one()
        data = {k: v for k, v in old.items() if not k.startswith("_")}
        cols = list(data)
        c.execute(sa.text(
            f"INSERT INTO {q(name)} ({_cols(cols)}, _stackql_run_id, _stackql_collected_at,"
            " _key_hash, _row_hash, _valid_from, _first_seen, _last_seen, _is_deleted)"
            f" VALUES ({', '.join(f':{k}' for k in cols)}, :_r, :_at, :_kh, :_rh, :_at, :_fs, :_ls, true)"),
            {**data, "_r": run_id, "_at": at, "_kh": kh, "_rh": old["_row_hash"], "_fs": old["_first_seen"],
             "_ls": old["_last_seen"]})


# The three-run history fixture: i-1 unchanged, i-2 changes state then disappears, i-3 appears in run 2,
# i-4 changes its tags (JSON) in run 3.
HISTORY_RUNS: list[list[dict[str, Any]]] = [
    [{"instance_id": "i-1", "region": "us-east-1", "state": "running", "tags": '{"env": "prod"}'},
     {"instance_id": "i-2", "region": "us-east-1", "state": "running", "tags": '{"env": "dev"}'},
     {"instance_id": "i-4", "region": "eu-west-1", "state": "running", "tags": '{"env": "prod"}'}],
    [{"instance_id": "i-1", "region": "us-east-1", "state": "running", "tags": '{"env": "prod"}'},
     {"instance_id": "i-2", "region": "us-east-1", "state": "stopped", "tags": '{"env": "dev"}'},
     {"instance_id": "i-3", "region": "us-west-2", "state": "pending", "tags": "{}"},
     {"instance_id": "i-4", "region": "eu-west-1", "state": "running", "tags": '{"env": "prod"}'}],
    [{"instance_id": "i-1", "region": "us-east-1", "state": "running", "tags": '{"env": "prod"}'},
     {"instance_id": "i-3", "region": "us-west-2", "state": "running", "tags": "{}"},
     {"instance_id": "i-4", "region": "eu-west-1", "state": "running", "tags": '{"env": "staging"}'}],
]


def seed_history(c: sa.Connection, name: str = "aws_ec2_history", *, provider: str = "aws") -> list[int]:
    """A history table written by three scheduled runs (ledger rows included); returns the run ids."""
    qid = add_query(c, f"{name} query", provider)
    sid = add_schedule(c, qid, name, cron="0 * * * *", mode="history", keys=["instance_id"])
    create_table(c, name, "instance_id text, region text, state text, tags text", history=True)
    run_ids = []
    for i, rows in enumerate(HISTORY_RUNS):
        at = T0 + timedelta(hours=i)
        rid = add_run(c, name, started_at=at, rows=len(rows), mode="history", schedule_id=sid, query_id=qid)
        history_run(c, name, rows, ["instance_id"], rid, at)
        run_ids.append(rid)
    return run_ids


APPEND_RUNS: list[list[dict[str, Any]]] = [
    [{"repo": "a", "stars": 1, "meta": '{"lang": "py"}'}, {"repo": "b", "stars": 5, "meta": '{"lang": "go"}'}],
    [{"repo": "a", "stars": 2, "meta": '{"lang": "py"}'}, {"repo": "c", "stars": 0, "meta": '{"lang": "rs"}'}],
]


def seed_append(c: sa.Connection, name: str = "github_repos", *, keys: Sequence[str] = ("repo",)) -> list[int]:
    """An append table written by two scheduled runs; returns the run ids."""
    qid = add_query(c, f"{name} query", "github")
    sid = add_schedule(c, qid, name, cron="*/15 * * * *", mode="append", keys=keys)
    create_table(c, name, "repo text, stars int, meta text")
    run_ids = []
    for i, rows in enumerate(APPEND_RUNS):
        at = T0 + timedelta(minutes=15 * i)
        rid = add_run(c, name, started_at=at, rows=len(rows), mode="append", schedule_id=sid, query_id=qid)
        insert_rows(c, name, rows, rid, at)
        run_ids.append(rid)
    return run_ids
