"""SQL comparing two runs of an inventory table: SCD2 `history` states or `append` snapshots."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from psycopg2 import sql
from sqlmodel import Session

from stackql_inventory.db.inventory_catalog import qualified, run
from stackql_inventory.db.models import INVENTORY_SCHEMA

# Columns the runner adds; never part of a resource's content.
META_COLUMNS = (
    "_stackql_run_id", "_stackql_collected_at", "_stackql_row_id", "_key_hash", "_row_hash", "_valid_from",
    "_valid_to", "_first_seen", "_last_seen", "_is_deleted", "_closed_by_run_id",
)
HISTORY_COLUMNS = ("_stackql_run_id", "_key_hash", "_row_hash", "_closed_by_run_id", "_is_deleted")
_MARK = "__inv_present"
_DROP = [*META_COLUMNS, _MARK]

_TARGET_SQL = sa.text(
    """
    SELECT s.write_mode AS schedule_mode, s.key_columns,
           (SELECT r.write_mode FROM stackql_app.runs r
            WHERE r.target_schema = :schema AND r.target_table = :table AND r.status = 'success'
            ORDER BY r.started_at DESC LIMIT 1) AS run_mode
    FROM (SELECT 1) one
    LEFT JOIN stackql_app.schedules s ON s.target_schema = :schema AND s.target_table = :table
    """
)


def target_mode(session: Session, table: str) -> sa.Row:
    """(schedule_mode, key_columns, run_mode) for the table; NULLs when no schedule or run names it."""
    return session.execute(_TARGET_SQL, {"schema": INVENTORY_SCHEMA, "table": table}).one()


def run_ids_in_data(session: Session, table: str, *, history: bool, limit: int, timeout_ms: int) -> list[tuple]:
    """(run id, collected at) of runs present in the table itself, newest first (when the ledger has none)."""
    run(session, f"SET LOCAL statement_timeout = '{int(timeout_ms)}ms'")
    ids = sql.SQL("SELECT _stackql_run_id AS id, max(_stackql_collected_at) AS at FROM {} GROUP BY 1").format(
        qualified(table))
    if history:
        ids = sql.SQL("{} UNION ALL SELECT _closed_by_run_id, NULL FROM {} WHERE _closed_by_run_id IS NOT NULL "
                      "GROUP BY 1").format(ids, qualified(table))
    return list(run(session, sql.SQL("SELECT id, max(at) FROM ({}) u GROUP BY id ORDER BY id DESC LIMIT %s")
                    .format(ids), (limit,)))


def _ranked(diff: sql.Composable, sort: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "SELECT kind, old, new, total FROM ("
        " SELECT d.kind, d.old, d.new, count(*) OVER (PARTITION BY d.kind) AS total,"
        "        row_number() OVER (PARTITION BY d.kind ORDER BY {sort}) AS rn"
        " FROM ({diff}) d) ranked "
        "WHERE rn <= %(limit)s ORDER BY kind, rn"
    ).format(sort=sort, diff=diff)


def _sort_expr(key_columns: Sequence[str]) -> sql.Composable:
    if not key_columns:
        return sql.SQL("coalesce(d.new, d.old)::text")
    return sql.SQL("concat_ws('|', {})").format(sql.SQL(", ").join(
        sql.SQL("coalesce(d.new, d.old) ->> {}").format(sql.Literal(k)) for k in key_columns))


def history_diff(session: Session, table: str, from_run: int, to_run: int, key_columns: Sequence[str],
                 limit: int, timeout_ms: int) -> list[tuple]:
    """Added / removed / changed resources between the SCD2 states as of two runs.

    State as of run R: versions opened by a run <= R, not closed by a run <= R, and not tombstones.
    Resources are matched on `_key_hash`; a resource changed when its version's `_row_hash` differs.
    Rows: (kind, old jsonb, new jsonb, total of that kind), at most `limit` per kind.
    """
    state = sql.SQL(
        "SELECT * FROM {t} WHERE _stackql_run_id <= {r} AND (_closed_by_run_id IS NULL OR _closed_by_run_id > {r}) "
        "AND NOT coalesce(_is_deleted, false)")
    diff = sql.SQL(
        "WITH a AS ({a}), b AS ({b}) "
        "SELECT CASE WHEN a._key_hash IS NULL THEN 'added' WHEN b._key_hash IS NULL THEN 'removed' "
        "            ELSE 'changed' END AS kind,"
        "       to_jsonb(a) - %(drop)s::text[] AS old, to_jsonb(b) - %(drop)s::text[] AS new "
        "FROM a FULL JOIN b ON a._key_hash = b._key_hash "
        "WHERE a._key_hash IS NULL OR b._key_hash IS NULL OR a._row_hash IS DISTINCT FROM b._row_hash"
    ).format(a=state.format(t=qualified(table), r=sql.Placeholder("r1")),
             b=state.format(t=qualified(table), r=sql.Placeholder("r2")))
    run(session, f"SET LOCAL statement_timeout = '{int(timeout_ms)}ms'")
    return list(run(session, _ranked(diff, _sort_expr(key_columns)),
                    {"r1": from_run, "r2": to_run, "drop": _DROP, "limit": limit}))


def append_diff(session: Session, table: str, from_run: int, to_run: int, key_columns: Sequence[str],
                limit: int, timeout_ms: int) -> list[tuple]:
    """Added / removed / changed rows between two runs of an append table.

    With key columns, rows are matched on them (one row per key and run; NULL keys match each other);
    a row changed when any other column differs. Without key columns, whole rows are compared as
    multisets (EXCEPT ALL), so there are only additions and removals.
    """
    run(session, f"SET LOCAL statement_timeout = '{int(timeout_ms)}ms'")
    params = {"r1": from_run, "r2": to_run, "drop": _DROP, "limit": limit}
    if key_columns:
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_columns)
        key_json = sql.SQL("jsonb_build_array({})").format(keys)
        snap = sql.SQL("SELECT DISTINCT ON ({keys}) t.*, {kj} AS __inv_key, 1 AS {mark} FROM {t} t "
                       "WHERE _stackql_run_id = {r} ORDER BY {keys}")
        diff = sql.SQL(
            "WITH a AS ({a}), b AS ({b}) "
            "SELECT CASE WHEN a.{mark} IS NULL THEN 'added' WHEN b.{mark} IS NULL THEN 'removed' "
            "            ELSE 'changed' END AS kind,"
            "       to_jsonb(a) - %(drop)s::text[] - '__inv_key' AS old,"
            "       to_jsonb(b) - %(drop)s::text[] - '__inv_key' AS new "
            "FROM a FULL JOIN b ON a.__inv_key = b.__inv_key "
            "WHERE a.{mark} IS NULL OR b.{mark} IS NULL "
            "   OR (to_jsonb(a) - %(drop)s::text[]) IS DISTINCT FROM (to_jsonb(b) - %(drop)s::text[])"
        ).format(
            a=snap.format(keys=keys, kj=key_json, mark=sql.Identifier(_MARK), t=qualified(table),
                          r=sql.Placeholder("r1")),
            b=snap.format(keys=keys, kj=key_json, mark=sql.Identifier(_MARK), t=qualified(table),
                          r=sql.Placeholder("r2")),
            mark=sql.Identifier(_MARK),
        )
    else:
        snap = sql.SQL("SELECT to_jsonb(t) - %(drop)s::text[] AS r FROM {t} t WHERE _stackql_run_id = {r}")
        diff = sql.SQL(
            "WITH a AS ({a}), b AS ({b}) "
            "SELECT 'added' AS kind, NULL::jsonb AS old, r AS new FROM (SELECT r FROM b EXCEPT ALL SELECT r FROM a) x "
            "UNION ALL "
            "SELECT 'removed', r, NULL::jsonb FROM (SELECT r FROM a EXCEPT ALL SELECT r FROM b) y"
        ).format(a=snap.format(t=qualified(table), r=sql.Placeholder("r1")),
                 b=snap.format(t=qualified(table), r=sql.Placeholder("r2")))
    return list(run(session, _ranked(diff, _sort_expr(key_columns)), params))


def duplicate_keys(session: Session, table: str, run_id: int, key_columns: Sequence[str]) -> int:
    """Rows of run `run_id` sharing a key with another row of the same run (the diff keeps one of each)."""
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_columns)
    return int(run(session, sql.SQL("SELECT count(*) - count(DISTINCT jsonb_build_array({})) FROM {} "
                                    "WHERE _stackql_run_id = %s").format(keys, qualified(table)), (run_id,)).scalar_one())
