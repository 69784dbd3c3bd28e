"""SQL over the PostgreSQL catalog (and the run ledger) describing the `stackql_inventory` schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql
from sqlmodel import Session

from stackql_inventory.db.models import INVENTORY_SCHEMA

# Tables (r, p) and materialized views (m) with the planner's row estimate inputs, size on disk, the
# schedule that writes each one, and the ledger's last success / last outcome / active run for it.
# Each LATERAL is one backward scan of ix_runs_target_started, so the cost grows with the number of
# tables, not with the length of the ledger.
_LIST_SQL = sa.text(
    """
    WITH rels AS (
        -- `name` carries collation "C" (through a cast to text, too), which would keep the planner off the
        -- ledger's default-collation index on target_table.
        SELECT c.oid, c.relname::text COLLATE "default" AS name, c.relkind, c.relfilenode, c.reltuples, c.relpages,
               c.relispopulated
        FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema)
          AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
    )
    SELECT c.oid::bigint AS oid,
           c.name,
           c.relkind AS kind,
           c.relfilenode::bigint AS relfilenode,
           c.reltuples::float8 AS reltuples,
           c.relpages::bigint AS relpages,
           -- Sizes open the relation (a lock); without them, the sizes as of the last VACUUM/ANALYZE.
           CASE WHEN :sizes THEN pg_relation_size(c.oid) ELSE c.relpages::bigint * :block_size END AS heap_bytes,
           CASE WHEN :sizes THEN pg_total_relation_size(c.oid) ELSE c.relpages::bigint * :block_size END AS size_bytes,
           obj_description(c.oid, 'pg_class') AS comment,
           c.relispopulated AS populated,
           EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attname = '_valid_from' AND NOT a.attisdropped) AS history_layout,
           s.id AS schedule_id, s.cron_expression, s.timezone, s.write_mode AS schedule_write_mode,
           s.is_active, s.key_columns,
           q.id AS query_id, q.name AS query_name, q.provider,
           ls.finished_at AS last_success_at, ls.rows_written AS last_success_rows,
           lo.status AS last_status, lo.finished_at AS last_finished_at, lo.write_mode AS run_write_mode,
           lo.error_message AS last_error,
           act.status AS active_status
    FROM rels c
    LEFT JOIN stackql_app.schedules s ON s.target_schema = :schema AND s.target_table = c.name
    LEFT JOIN LATERAL (
        SELECT r.finished_at, r.rows_written FROM stackql_app.runs r
        WHERE r.target_schema = :schema AND r.target_table = c.name AND r.status = 'success'
        ORDER BY r.started_at DESC LIMIT 1) ls ON true
    LEFT JOIN LATERAL (
        SELECT r.status, r.finished_at, r.write_mode, r.error_message, r.query_id FROM stackql_app.runs r
        WHERE r.target_schema = :schema AND r.target_table = c.name AND r.status IN ('success', 'failed')
        ORDER BY r.started_at DESC LIMIT 1) lo ON true
    LEFT JOIN LATERAL (
        SELECT r.status FROM stackql_app.runs r
        WHERE r.target_schema = :schema AND r.target_table = c.name AND r.status IN ('queued', 'running')
        ORDER BY r.started_at DESC LIMIT 1) act ON true
    LEFT JOIN LATERAL (
        SELECT q.id, q.name, q.provider FROM stackql_app.queries q
        WHERE q.id = coalesce(s.query_id, lo.query_id)) q ON true
    ORDER BY c.name
    """
)

# Tables counted per statement (a target list holds at most 1,664 entries).
_COUNT_BATCH = 250

_BLOCK_SIZE_SQL = sa.text("SELECT current_setting('block_size')::int")

_COLUMNS_SQL = sa.text(
    """
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
    FROM pg_attribute a
    WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
    """
)

_RELATION_SQL = sa.text(
    """
    SELECT c.oid::bigint AS oid, c.relname AS name, c.relkind AS kind, c.relfilenode::bigint AS relfilenode,
           c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
           pg_relation_size(c.oid) AS heap_bytes, c.relispopulated AS populated,
           obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema)
      AND c.relname = :name AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
    """
)

# Unique btree indexes usable as a keyset: plain ascending columns, no predicate, every row covered.
_UNIQUE_KEYS_SQL = sa.text(
    """
    SELECT ic.relname AS index_name, i.indisprimary AS is_primary,
           array_agg(a.attname ORDER BY k.ord) AS columns,
           bool_and(a.attnotnull) AS all_not_null
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
    JOIN LATERAL unnest(i.indkey::int2[], i.indoption::int2[]) WITH ORDINALITY AS k(attnum, opt, ord) ON true
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = :oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
      AND k.ord <= i.indnkeyatts
    GROUP BY ic.relname, i.indisprimary
    HAVING bool_and(k.opt = 0)
    ORDER BY i.indisprimary DESC, count(*), ic.relname
    """
)

# What identifies the table's physical data right now: a run that swaps or truncates the table changes
# these; updates and deletes move rows (which matters for ctid paging).
_VERSION_SQL = sa.text(
    """
    SELECT c.oid::bigint AS oid, c.relfilenode::bigint AS relfilenode,
           (pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid)
            + pg_stat_get_xact_tuples_updated(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid))::bigint AS moved
    FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema) AND c.relname = :name
    """
)


@dataclass(frozen=True)
class Column:
    """One column of an inventory relation."""

    name: str
    type: str
    not_null: bool


@dataclass(frozen=True)
class UniqueKey:
    """A unique btree index whose columns can drive keyset paging."""

    index_name: str
    is_primary: bool
    columns: tuple[str, ...]
    all_not_null: bool


def list_relations(session: Session, *, sizes: bool = True, block_size: int = 8192) -> list[sa.Row]:
    """Tables and materialized views of the inventory schema with schedule and ledger facts.

    `sizes=False` reads no relation (so it never waits for a run's exclusive lock) and reports sizes
    from `relpages` instead.
    """
    return list(session.execute(_LIST_SQL, {"schema": INVENTORY_SCHEMA, "sizes": sizes, "block_size": block_size}))


_FAILED_WITHOUT_TABLE_SQL = sa.text("""
SELECT count(*) FROM stackql_app.schedules s
WHERE s.target_schema = :schema
  AND to_regclass(format('%I.%I', s.target_schema, s.target_table)) IS NULL
  AND (SELECT r.status FROM stackql_app.runs r
       WHERE r.schedule_id = s.id AND r.status IN ('success', 'failed')
       ORDER BY r.started_at DESC, r.id DESC LIMIT 1) = 'failed'
""")


def failed_schedules_without_table(session: Session) -> int:
    """Schedules whose last finished run failed before their inventory table ever existed."""
    return int(session.execute(_FAILED_WITHOUT_TABLE_SQL, {"schema": INVENTORY_SCHEMA}).scalar_one())


def set_lock_timeout(session: Session, ms: int) -> None:
    """Give up (SQLSTATE 55P03) instead of queueing behind a run that holds a table exclusively."""
    run(session, f"SET LOCAL lock_timeout = '{int(ms)}ms'")


def is_lock_timeout(error: BaseException) -> bool:
    return getattr(getattr(error, "orig", None), "pgcode", "") == "55P03"


def capped_counts(session: Session, names: list[str], cap: int, *, lock_timeout_ms: int = 200) -> dict[str, int]:
    """Exact `count(*)` of each named relation, reading at most `cap + 1` rows of each.

    One statement per batch of tables: `SELECT (SELECT count(*) FROM (SELECT 1 FROM t LIMIT cap+1) s), …`
    (identifiers quoted by the driver). The cap bounds the work even when the planner's estimate is badly
    out of date. A relation another transaction holds exclusively (a run swapping it) raises after
    `lock_timeout_ms` instead of making the list wait; the caller falls back to estimates.
    """
    if not names:
        return {}
    set_lock_timeout(session, lock_timeout_ms)
    out: dict[str, int] = {}
    for i in range(0, len(names), _COUNT_BATCH):
        batch = names[i:i + _COUNT_BATCH]
        stmt = sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL("(SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) s)").format(qualified(n), sql.Literal(cap + 1))
            for n in batch))
        out.update(zip(batch, (int(v) for v in run(session, stmt).one()), strict=True))
    return out


def block_size(session: Session) -> int:
    return int(session.execute(_BLOCK_SIZE_SQL).scalar_one())


def relation(session: Session, name: str) -> sa.Row | None:
    """The catalog row of one inventory table or materialized view (None when absent)."""
    return session.execute(_RELATION_SQL, {"schema": INVENTORY_SCHEMA, "name": name}).first()


def columns(session: Session, oid: int) -> list[Column]:
    return [Column(r.name, r.type, bool(r.not_null)) for r in session.execute(_COLUMNS_SQL, {"oid": oid})]


def unique_keys(session: Session, oid: int) -> list[UniqueKey]:
    """Unique indexes usable for keyset paging, primary key first, then the narrowest."""
    return [
        UniqueKey(r.index_name, bool(r.is_primary), tuple(r.columns), bool(r.all_not_null))
        for r in session.execute(_UNIQUE_KEYS_SQL, {"oid": oid})
    ]


def version(session: Session, name: str) -> sa.Row | None:
    """(oid, relfilenode, rows updated or deleted so far) of one relation."""
    return session.execute(_VERSION_SQL, {"schema": INVENTORY_SCHEMA, "name": name}).first()


def qualified(name: str) -> sql.Composed:
    """`"stackql_inventory"."<name>"`, quoted by the driver."""
    return sql.SQL("{}.{}").format(sql.Identifier(INVENTORY_SCHEMA), sql.Identifier(name))


def driver_connection(session: Session) -> Any:
    """The psycopg2 connection under the session (same transaction)."""
    return session.connection().connection.driver_connection


def run(session: Session, stmt: sql.Composable | str, params: Any = None) -> sa.CursorResult:
    """Execute a `psycopg2.sql` statement (identifiers quoted by the driver) on the session's connection.

    Going through SQLAlchemy keeps its error wrapping (sa.exc.*) and the session's transaction.
    """
    conn = session.connection()
    text = stmt if isinstance(stmt, str) else stmt.as_string(conn.connection.driver_connection)
    if params is None:  # cursor.execute(text) without parameters: a `%` in the text stays a `%`
        return conn.execution_options(no_parameters=True).exec_driver_sql(text)
    return conn.exec_driver_sql(text, params)
