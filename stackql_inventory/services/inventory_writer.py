"""Inventory writer: streams a stackql result into `stackql_inventory.<table>` with COPY, atomically.

The only SQL outside `db/`. One write is one PostgreSQL transaction on a dedicated connection that
also holds the target's advisory lock, so a reader (dashboard, federated query) sees the previous
contents until the commit and the new contents after it, never an empty or half-written table. A
failure, or a killed process (the server aborts the transaction when the connection drops), leaves
the table exactly as it was. The table itself is never dropped, renamed or retyped, so views and
materialized views on it keep working.

Write modes (every row carries `_stackql_run_id bigint` and `_stackql_collected_at timestamptz`):

- `replace`: the table holds the latest result. `DELETE` + `COPY` in one transaction (MVCC: no reader
  blocks or sees a gap; the dead rows are left to autovacuum).
- `append`: every run is kept; the rows of run R have `_stackql_run_id = R`.
- `history` (SCD type 2 in one table): the result columns plus
  `_stackql_run_id` (run that opened the version), `_stackql_collected_at`, `_key_hash text`,
  `_row_hash text`, `_valid_from timestamptz`, `_valid_to timestamptz` (NULL = current),
  `_first_seen`, `_last_seen timestamptz`, `_is_deleted boolean`, `_closed_by_run_id bigint`
  (run that closed the version, NULL while current). A resource is identified by its key: the
  schedule's key columns (`_key_hash` = md5 of their values as a PostgreSQL record text), or,
  without key columns, the whole row (`_key_hash` = `_row_hash`; a repeated identical row gets
  md5(`_row_hash` || ':' || n)). `_row_hash` is the md5 of the row's result columns (by name, as
  PostgreSQL prints the record: NULL and '' differ), so a query that gains or loses a column opens
  a new version of every resource once. A run at time T (its
  `_stackql_collected_at`) with run id R:
    * seen and unchanged: the current version gets `_last_seen = T`;
    * new, changed, or back after a deletion: the current version (if any) is closed
      (`_valid_to = T`, `_closed_by_run_id = R`) and a new one opened (`_valid_from = T`,
      `_first_seen` kept from the resource's earlier versions);
    * gone: the current version is closed and a tombstone opened: the last values with
      `_is_deleted = true`, `_valid_from = T`, `_valid_to` NULL, `_last_seen` = when last seen.

  The table as of a time T (what a `replace` table showed then):

      SELECT * FROM t WHERE _valid_from <= T AND (_valid_to IS NULL OR _valid_to > T) AND NOT _is_deleted

  and as of run R (the runner never lets a run write after a higher-numbered run wrote the same
  target, so run ids grow with write order):

      SELECT * FROM t WHERE _stackql_run_id <= R AND (_closed_by_run_id IS NULL OR _closed_by_run_id > R)
                        AND NOT _is_deleted

  Current state: `WHERE _valid_to IS NULL AND NOT _is_deleted`.

Schema evolution: a result column the table lacks is added (type inferred from all of this run's
values: bigint, double precision, boolean, timestamptz, else text; timestamps without a zone are
UTC). A column the result no longer has is kept (NULL in new rows). A value that does not fit its
column's type is an error naming the column; the table is left untouched. Nothing is ever dropped
or retyped.

Identifiers: schema and table names must match `^[a-z_][a-z0-9_]{0,62}$` (and not start with
`pg_`); every identifier goes through psycopg2's quoting. Result column names can be any string: a
name longer than PostgreSQL's 63 bytes is shortened to 54 bytes + `_` + 8 hex digits of its sha1
(and the full name kept in the column's comment).

Concurrency: `open_target()` takes a session advisory lock keyed on (schema, table). By default it
does not wait: a second writer gets `TargetBusy` (the runner records that run as skipped, with the
reason); `wait=True` queues behind the holder instead.

Materialized views that depend on the table, directly or through views, are found through
pg_depend/pg_rewrite (information_schema does not list them) and refreshed after each write, in
dependency order, CONCURRENTLY when populated and a plain unique index allows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2 import sql

from stackql_inventory.services.copy_source import (
    COPY_READ_SIZE, Batch, CopySource, JsonLinesToCopy, RowBatches, row_batches)
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

MODES = ("replace", "append", "history")
DEFAULT_SCHEMA = "stackql_inventory"

RUN_ID, COLLECTED_AT = "_stackql_run_id", "_stackql_collected_at"
COMMON_META = ((RUN_ID, "bigint"), (COLLECTED_AT, "timestamptz"))
HISTORY_META = (
    ("_key_hash", "text"), ("_row_hash", "text"), ("_valid_from", "timestamptz"), ("_valid_to", "timestamptz"),
    ("_first_seen", "timestamptz"), ("_last_seen", "timestamptz"), ("_is_deleted", "boolean"),
    ("_closed_by_run_id", "bigint"),
)
META_COLUMNS = frozenset(name for name, _ in COMMON_META + HISTORY_META)

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESERVED_SCHEMAS = frozenset({"stackql_app", "information_schema", "public"})
_MAX_IDENT_BYTES = 63
_LOCK_NAMESPACE = "stackql-inventory.writer:"

# Type inference for columns a table does not have yet: every value of this run must fit.
_INT_RE = r"^-?[0-9]{1,19}$"
_FLOAT_RE = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"


# ============================================================================ public values


@dataclass(frozen=True)
class Provenance:
    """Where a table's rows come from, written into its COMMENT for people reading it elsewhere."""

    query_name: str
    query_id: int | None = None
    schedule_id: int | None = None
    cron: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class HistoryCounts:
    """What one history write did to the versions."""

    opened: int       # new versions of new, changed or returning resources
    closed: int       # versions closed (changed, deleted or returning)
    deleted: int      # tombstones opened for resources that disappeared
    unchanged: int    # current versions seen again


@dataclass(frozen=True)
class WriteResult:
    """One committed write."""

    table: str                       # schema.table
    mode: str
    rows_written: int                # rows of the result
    created: bool                    # the table was created by this write
    added_columns: tuple[str, ...]   # columns added to an existing table
    column_names: tuple[tuple[str, str], ...]  # (result column, table column) where they differ
    history: HistoryCounts | None
    elapsed_s: float


@dataclass(frozen=True)
class Dependant:
    """A view or materialized view that depends on a table (directly or through views)."""

    schema: str
    name: str
    kind: str          # "view" | "materialized view"
    depth: int         # 1 = reads the table itself
    populated: bool
    concurrent_ok: bool  # has a plain unique index: REFRESH … CONCURRENTLY possible

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class RefreshResult:
    """Materialized views refreshed after a write."""

    refreshed: tuple[str, ...] = ()
    concurrently: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (view, message)

    def raise_for_failures(self, table: str) -> None:
        """A user-facing error naming the views that could not be refreshed (the table itself was written)."""
        if self.failed:
            names = "; ".join(f"{name}: {message}" for name, message in self.failed)
            raise UserFacingError(
                f"{table} was written, but refreshing its materialized view(s) failed ({names}). Fix the view "
                "(or grant this app's database role ownership of it), then run again.", ErrorKind.DATABASE)


class TargetBusy(UserFacingError):
    """Another session holds the target's advisory lock."""

    def __init__(self, table: str):
        super().__init__(
            f"Another run is writing {table} right now; this run did not start its query. The next scheduled "
            "run will write it again.", ErrorKind.CONFLICT)
        self.table = table


# ============================================================================ identifiers


def validate_name(name: object, what: str = "table") -> str:
    """A schema or table name as given, or a VALIDATION error saying what is allowed."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name)[:80]
        raise UserFacingError(
            f"{shown} is not a valid {what} name: use 1 to 63 lowercase letters, digits and underscores, "
            "starting with a letter or underscore.", ErrorKind.VALIDATION)
    if name.startswith("pg_"):
        raise UserFacingError(
            f"'{name}' is not a valid {what} name: names starting with pg_ are reserved by PostgreSQL.",
            ErrorKind.VALIDATION)
    if what == "schema" and name in _RESERVED_SCHEMAS:
        raise UserFacingError(
            f"Schema '{name}' cannot receive inventory tables (it holds the app's own or PostgreSQL's "
            f"objects): use {DEFAULT_SCHEMA} or another schema.", ErrorKind.VALIDATION)
    return name


def column_identifier(name: str) -> str:
    """The PostgreSQL column name for a result column (names over 63 bytes shortened with a hash)."""
    if not isinstance(name, str) or not name:
        raise UserFacingError(
            "The result has a column without a name: give every expression an alias (SELECT … AS name).",
            ErrorKind.SCHEMA)
    if "\x00" in name:
        raise UserFacingError(
            f"The result column {name.replace(chr(0), '')!r} contains a NUL character, which PostgreSQL names "
            "cannot hold: give it an alias.", ErrorKind.SCHEMA)
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= _MAX_IDENT_BYTES:
        return name
    head = raw[:54].decode("utf-8", "ignore")
    return f"{head}_{hashlib.sha1(raw).hexdigest()[:8]}"


def map_columns(columns: Sequence[str], mode: str) -> list[str]:
    """Table column names for the result's columns; refuses reserved and colliding names."""
    reserved = {RUN_ID, COLLECTED_AT} | ({n for n, _ in HISTORY_META} if mode == "history" else set())
    mapped: list[str] = []
    seen: dict[str, str] = {}
    for name in columns:
        if name in reserved:
            raise UserFacingError(
                f"The result has a column named {name}, which the inventory table uses for its own bookkeeping: "
                f"rename it in the query (SELECT … AS other_name).", ErrorKind.SCHEMA)
        ident = column_identifier(name)
        if ident in seen:
            raise UserFacingError(
                f"The result columns {seen[ident]!r} and {name!r} would share the table column {ident!r}: rename "
                "one of them in the query (SELECT … AS other_name).", ErrorKind.SCHEMA)
        seen[ident] = name
        mapped.append(ident)
    return mapped


def _ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def _idents(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def lock_key(schema: str, table: str) -> int:
    """The advisory lock key (signed 64-bit) of a target."""
    digest = hashlib.sha256(f"{_LOCK_NAMESPACE}{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# ============================================================================ catalog helpers


@dataclass
class _Table:
    oid: int
    kind: str
    columns: dict[str, str] = field(default_factory=dict)  # name -> format_type, in attnum order

    def is_history(self) -> bool:
        return all(name in self.columns for name, _ in HISTORY_META)

    def is_inventory(self) -> bool:
        return RUN_ID in self.columns and COLLECTED_AT in self.columns


def _describe(cur: Any, schema: str, table: str) -> _Table | None:
    cur.execute(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
    found = cur.fetchone()
    if found is None:
        return None
    info = _Table(int(found[0]), found[1])
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (info.oid,))
    info.columns = {name: typ for name, typ in cur.fetchall()}
    return info


_DEPENDANTS_SQL = """
WITH RECURSIVE deps(oid, depth) AS (
    SELECT r.ev_class, 1
    FROM pg_depend d
    JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND r.ev_class <> %(oid)s
  UNION
    SELECT r.ev_class, deps.depth + 1
    FROM deps
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.oid
    JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
    WHERE r.ev_class <> deps.oid AND deps.depth < 64
)
SELECT n.nspname, c.relname, c.relkind, max(deps.depth) AS depth, c.relispopulated,
       EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate
                 AND i.indpred IS NULL AND i.indexprs IS NULL) AS concurrent_ok
FROM deps
JOIN pg_class c ON c.oid = deps.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
GROUP BY n.nspname, c.relname, c.relkind, c.relispopulated, c.oid
ORDER BY depth, n.nspname, c.relname
"""


def _dependants(cur: Any, oid: int) -> list[Dependant]:
    cur.execute(_DEPENDANTS_SQL, {"oid": oid})
    return [
        Dependant(schema, name, "materialized view" if kind == "m" else "view", int(depth), bool(populated),
                  bool(concurrent_ok))
        for schema, name, kind, depth, populated, concurrent_ok in cur.fetchall()
    ]


# ============================================================================ errors


_COPY_CONTEXT = re.compile(r"COPY (?P<rel>.+?), line (?P<line>\d+)(?:, column (?P<rest>.*))?", re.S)


def _failing_column(exc: Any, columns: Sequence[str]) -> tuple[str | None, int | None, str | None]:
    """(column, line, value) of a COPY data error, read from the error's context."""
    diag = getattr(exc, "diag", None)
    column = getattr(diag, "column_name", None)
    context = (getattr(diag, "context", None) or "").strip()
    line = value = None
    m = _COPY_CONTEXT.search(context)
    if m:
        line = int(m.group("line"))
        rest = m.group("rest")
        if rest and column is None:
            for name in sorted(columns, key=len, reverse=True):
                if rest.startswith(name + ": ") or rest == name or rest.startswith(name + ":"):
                    column = name
                    tail = rest[len(name) + 1:].strip()
                    if tail.startswith('"') and tail.endswith('"'):
                        value = tail[1:-1]
                    elif tail:
                        value = tail
                    break
    return column, line, value


def _suggest_type(current: str, value: str | None) -> str:
    if value is not None and current in ("bigint", "integer", "smallint"):
        if re.fullmatch(_FLOAT_RE.strip("^$"), value):
            return "double precision"
    return "text"


def _database_error(exc: Exception, table: str, columns: Sequence[str], types: dict[str, str],
                    result_names: dict[str, str]) -> UserFacingError:
    """A user-facing error for a PostgreSQL error during a write (the transaction was rolled back)."""
    import psycopg2
    import psycopg2.errors as pge

    diag = getattr(exc, "diag", None)
    text = str(exc).strip()
    primary = getattr(diag, "message_primary", None) or (text.splitlines()[0] if text else type(exc).__name__)
    if isinstance(exc, (psycopg2.DataError, pge.NotNullViolation)):
        column, line, value = _failing_column(exc, columns)
        if column is not None:
            typ = types.get(column, "text")
            shown = result_names.get(column, column)
            where = f" (row {line})" if line else ""
            if isinstance(exc, pge.NotNullViolation):
                return UserFacingError(
                    f"Column {shown!r} of {table} does not accept NULL, but this run returned NULL for it{where}. "
                    f"The table was left unchanged. Drop the NOT NULL constraint or filter those rows in the "
                    f"query, then run again.", ErrorKind.SCHEMA, detail=primary)
            got = f" {value[:80]!r}" if value is not None else " a value"
            suggestion = _suggest_type(typ, value)
            return UserFacingError(
                f"Column {shown!r} of {table} is {typ}, but this run returned{got} for it{where}, which does not "
                f"fit ({primary}). The table was left unchanged. Change the value in the query, or the column's "
                f"type (ALTER TABLE {table} ALTER COLUMN {_quote_for_message(column)} TYPE {suggestion} USING "
                f"{_quote_for_message(column)}::{suggestion}), then run again.", ErrorKind.SCHEMA, detail=primary)
        return UserFacingError(
            f"A value of this run does not fit {table} ({primary}). The table was left unchanged.",
            ErrorKind.SCHEMA, detail=primary)
    if isinstance(exc, pge.UniqueViolation):
        constraint = getattr(diag, "constraint_name", None) or "a unique index"
        return UserFacingError(
            f"This run's rows break {constraint} on {table} ({primary}). The table was left unchanged. Remove "
            "duplicates in the query, or drop that index, then run again.", ErrorKind.SCHEMA, detail=primary)
    if isinstance(exc, pge.LockNotAvailable):
        return UserFacingError(
            f"{table} is locked by another session (a long query or a schema change) and its columns could not be "
            "added in time. The table was left unchanged; the next run tries again.", ErrorKind.CONFLICT,
            detail=primary)
    if isinstance(exc, pge.InsufficientPrivilege):
        return UserFacingError(
            f"The app's database role may not write {table} ({primary}). Grant it ownership of the table, then "
            "run again.", ErrorKind.PERMISSION, detail=primary)
    if isinstance(exc, pge.QueryCanceled):
        return UserFacingError(f"Writing {table} was cancelled ({primary}). The table was left unchanged.",
                               ErrorKind.CANCELLED, detail=primary)
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return UserFacingError(
            f"The database connection failed while writing {table} ({primary}). The table was left unchanged; "
            "run again.", ErrorKind.DATABASE, detail=primary)
    return UserFacingError(f"Writing {table} failed: {primary}. The table was left unchanged.",
                           ErrorKind.DATABASE, detail=primary)


def _quote_for_message(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ============================================================================ the target session


def _comment_text(prov: Provenance | None, mode: str, key_columns: Sequence[str], run_id: int,
                  collected_at: datetime, rows: int) -> str:
    lines = ["StackQL Cloud Inventory table (written by its runner; do not edit by hand)."]
    if prov is not None:
        query = prov.query_name + (f" (query {prov.query_id})" if prov.query_id is not None else "")
        lines.append(f"Source query: {query}")
        if prov.schedule_id is not None:
            cron = f", cron {prov.cron} ({prov.timezone or 'UTC'})" if prov.cron else ""
            lines.append(f"Schedule: {prov.schedule_id}{cron}")
        else:
            lines.append("Schedule: none (one-off run)")
    keys = f" (key: {', '.join(key_columns) if key_columns else 'whole-row hash'})" if mode == "history" else ""
    lines.append(f"Write mode: {mode}{keys}")
    lines.append(f"Last refresh: {collected_at.isoformat()} by run {run_id} ({rows} rows)")
    return "\n".join(lines)


def _batches(rows: Iterable[Sequence[str | None]] | RowBatches, columns: list[str],
             constants: Sequence[str] = ()) -> Iterator[Batch]:
    """The result in COPY batches: the engine's stream converts its JSON Lines blocks; plain rows are batched."""
    if hasattr(rows, "batches"):
        return rows.batches(JsonLinesToCopy(columns, constants))
    return row_batches(rows)


class TargetSession:
    """A locked target: `now()`, `write(...)`, `refresh_dependants()`. Made by `open_target()`."""

    def __init__(self, conn: Any, schema: str, table: str):
        self._conn = conn
        self.schema = schema
        self.table = table
        self.qualified = f"{schema}.{table}"
        self._t_step = time.monotonic()

    # ---------------------------------------------------------------- small queries
    def now(self) -> datetime:
        """The database clock (after the lock was taken): the collection time of a run."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT clock_timestamp()")
            value = cur.fetchone()[0]
        self._conn.rollback()
        return value

    def dependants(self) -> list[Dependant]:
        """Views and materialized views reading the table, in refresh order."""
        with self._conn.cursor() as cur:
            info = _describe(cur, self.schema, self.table)
            found = _dependants(cur, info.oid) if info is not None else []
        self._conn.rollback()
        return found

    # ---------------------------------------------------------------- write
    def write(self, columns: Sequence[str], rows: Iterable[Sequence[str | None]] | RowBatches, *, mode: str,
              run_id: int, collected_at: datetime, key_columns: Sequence[str] = (),
              provenance: Provenance | None = None) -> WriteResult:
        """Write one result (columns in SELECT order; rows of str | None, or the engine's stream) in one transaction.

        Given the engine's stream (anything with `batches(convert)`), blocks of stackql's JSON Lines
        go to COPY converted by pyarrow, not row by row (see copy_source).

        Raises UserFacingError (the table untouched) for a value that no longer fits, a table that
        is not an inventory table of this mode, missing key columns, and database failures.
        """
        if mode not in MODES:
            raise UserFacingError(f"Unknown write mode {mode!r}: use one of {', '.join(MODES)}.",
                                  ErrorKind.VALIDATION)
        t0 = self._t_step = time.monotonic()
        columns = list(columns)
        mapped = map_columns(columns, mode)
        result_names = {m: c for c, m in zip(columns, mapped)}
        keys = self._key_columns(key_columns, columns, mapped) if mode == "history" else []
        conn = self._conn
        types: dict[str, str] = {}
        try:
            with conn.cursor() as cur:
                info = _describe(cur, self.schema, self.table)
                self._check_table(info, mode)
                new_cols = [c for c in mapped if info is None or c not in info.columns]
                if info is None and not mapped:
                    raise UserFacingError(
                        "The query returned no columns, so there is no table to create: select some columns, then "
                        "run again.", ErrorKind.SCHEMA)
                types = {c: (info.columns[c] if info is not None and c in info.columns else "text") for c in mapped}
                created = info is None
                history = None
                if not new_cols and mode != "history":
                    rows_written = self._write_direct(cur, columns, mapped, rows, mode, run_id, collected_at)
                else:
                    rows_written, types, history = self._write_staged(
                        cur, info, columns, mapped, types, new_cols, rows, mode, run_id, collected_at, keys)
                if created or new_cols:
                    for table_col, result_col in zip(mapped, columns):
                        if table_col != result_col and table_col in new_cols:
                            cur.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                                _ident(self.schema, self.table, table_col),
                                sql.Literal(f"stackql column: {result_col}")))
                cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    _ident(self.schema, self.table),
                    sql.Literal(_comment_text(provenance, mode, key_columns, run_id, collected_at, rows_written))))
            conn.commit()
        except UserFacingError:
            self._rollback()
            raise
        except Exception as exc:
            self._rollback()
            import psycopg2

            if isinstance(exc, psycopg2.Error):
                raise _database_error(exc, self.qualified, mapped, types, result_names) from None
            raise
        except BaseException:
            self._rollback()
            raise
        elapsed = time.monotonic() - t0
        counts = (f" opened={history.opened} closed={history.closed} deleted={history.deleted} "
                  f"unchanged={history.unchanged}") if history is not None else ""
        log.info("event=inventory_written table=%s mode=%s run_id=%s rows=%d created=%s added_columns=%d%s "
                 "elapsed_s=%.3f", self.qualified, mode, run_id, rows_written, created,
                 0 if created else len(new_cols), counts, elapsed)
        return WriteResult(
            table=self.qualified, mode=mode, rows_written=rows_written, created=created,
            added_columns=tuple(c for c in new_cols) if not created else (),
            column_names=tuple((c, m) for c, m in zip(columns, mapped) if c != m),
            history=history, elapsed_s=elapsed)

    def _step(self, what: str) -> None:
        """Debug timing of the write's steps."""
        now = time.monotonic()
        log.debug("event=inventory_write_step table=%s step=%r seconds=%.3f", self.qualified, what, now - self._t_step)
        self._t_step = now

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.rollback()

    def _key_columns(self, key_columns: Sequence[str], columns: list[str], mapped: list[str]) -> list[str]:
        keys = []
        for key in key_columns:
            if key not in columns:
                raise UserFacingError(
                    f"Key column {key!r} is not in the query's result (its columns: {', '.join(columns[:30])}). Fix "
                    "the schedule's key columns or the query, then run again.", ErrorKind.VALIDATION)
            keys.append(mapped[columns.index(key)])
        return list(dict.fromkeys(keys))

    def _check_table(self, info: _Table | None, mode: str) -> None:
        if info is None:
            return
        if info.kind not in ("r", "p"):
            kind = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}.get(info.kind, "not a table")
            raise UserFacingError(
                f"{self.qualified} is {kind}, not an inventory table: choose another target table.",
                ErrorKind.VALIDATION)
        if not info.is_inventory():
            raise UserFacingError(
                f"{self.qualified} exists but was not created by StackQL Inventory (it has no {RUN_ID} column); "
                "its rows are left alone: choose another target table.", ErrorKind.VALIDATION)
        if mode == "history" and not info.is_history():
            raise UserFacingError(
                f"{self.qualified} holds replace/append rows, and history mode needs its own table: choose a new "
                "target table (or drop this one), then run again.", ErrorKind.VALIDATION)
        if mode != "history" and info.is_history():
            raise UserFacingError(
                f"{self.qualified} holds history (validity intervals); writing it in {mode} mode would discard "
                "them: keep history mode, or choose a new target table.", ErrorKind.VALIDATION)

    def _copy(self, cur: Any, statement: sql.Composable, source: CopySource, before: sql.Composable | None = None
              ) -> None:
        """COPY from `source`; `before` (the DELETE of a replace) runs first while the source encodes ahead."""
        import psycopg2

        source.start()
        try:
            if before is not None:
                cur.execute(before)
            cur.copy_expert(statement, source, size=COPY_READ_SIZE)
            source.join()
        except psycopg2.Error:
            source.stop()
            if source.error is not None:
                raise source.error from None
            raise
        except BaseException:
            source.stop()
            raise

    def _write_direct(self, cur: Any, columns: list[str], mapped: list[str],
                      rows: Iterable[Sequence[str | None]] | RowBatches, mode: str, run_id: int,
                      collected_at: datetime) -> int:
        """Steady state: COPY straight into the table (replace: after deleting the old rows, same transaction)."""
        target = _ident(self.schema, self.table)
        constants = (str(int(run_id)), collected_at.isoformat())
        source = CopySource(_batches(rows, columns, constants), mapped, constants)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, _idents([*mapped, RUN_ID, COLLECTED_AT]))
        before = sql.SQL("DELETE FROM {}").format(target) if mode == "replace" else None
        self._copy(cur, statement, source, before)
        return source.rows

    def _write_staged(self, cur: Any, info: _Table | None, columns: list[str], mapped: list[str],
                      types: dict[str, str], new_cols: list[str], rows: Iterable[Sequence[str | None]] | RowBatches,
                      mode: str, run_id: int, collected_at: datetime, keys: list[str]
                      ) -> tuple[int, dict[str, str], HistoryCounts | None]:
        """New table, new columns or history: COPY into a temp table, then change the table in one short step."""
        stage = _ident("_stackql_stage")
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            stage, sql.SQL(", ").join(sql.SQL("{} {}").format(_ident(c), sql.SQL(types[c])) for c in mapped)))
        source = CopySource(_batches(rows, columns), mapped)
        if mapped:
            self._copy(cur, sql.SQL("COPY {} ({}) FROM STDIN").format(stage, _idents(mapped)), source)
        else:
            source.count_only()
        self._step("stage copy")
        types = dict(types)
        types.update(self._infer_types(cur, new_cols))
        self._step("infer types")
        target = _ident(self.schema, self.table)
        if info is None:
            meta = COMMON_META + (HISTORY_META if mode == "history" else ())
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_ident(self.schema)))
            defs = [sql.SQL("{} {}").format(_ident(c), sql.SQL(types[c])) for c in mapped]
            defs += [sql.SQL("{} {}{}").format(_ident(name), sql.SQL(typ),
                                               sql.SQL("" if name in ("_valid_to", "_closed_by_run_id")
                                                       else " NOT NULL")) for name, typ in meta]
            options = sql.SQL(" WITH (fillfactor = 50)") if mode == "history" else sql.SQL("")
            cur.execute(sql.SQL("CREATE TABLE {} ({}){}").format(target, sql.SQL(", ").join(defs), options))
            if mode == "history":
                cur.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} (_key_hash) WHERE _valid_to IS NULL").format(
                    _ident(_index_name(self.table, "current_key")), target))
        elif new_cols:
            # Adding columns needs the table's exclusive lock: taken only now, for a short final step.
            cur.execute("SET LOCAL lock_timeout = '30s'")
            cur.execute(sql.SQL("ALTER TABLE {} {}").format(target, sql.SQL(", ").join(
                sql.SQL("ADD COLUMN {} {}").format(_ident(c), sql.SQL(types[c])) for c in new_cols)))
            cur.execute("SET LOCAL lock_timeout = 0")
        casts = sql.SQL(", ").join(
            sql.SQL("CAST(s.{} AS {}) AS {}").format(_ident(c), sql.SQL(types[c]), _ident(c))
            if c in new_cols else sql.SQL("s.{}").format(_ident(c)) for c in mapped)
        rid, ts = sql.Literal(int(run_id)), sql.Literal(collected_at)
        history = None
        if mode in ("replace", "append"):
            if mode == "replace":
                cur.execute(sql.SQL("DELETE FROM {}").format(target))
            select = sql.SQL("SELECT {}{}{}, {} FROM {} s").format(
                casts, sql.SQL(", ") if mapped else sql.SQL(""), rid, ts, stage) if mapped else \
                sql.SQL("SELECT {}, {} FROM {} s").format(rid, ts, stage)
            cur.execute(sql.SQL("INSERT INTO {} ({}) {}").format(
                target, _idents([*mapped, RUN_ID, COLLECTED_AT]), select))
        else:
            table_cols = mapped if info is None else [
                *[c for c in info.columns if c not in META_COLUMNS], *new_cols]
            history = self._merge_history(cur, target, stage, casts, mapped, table_cols, keys, rid, ts)
        return source.rows, types, history

    def _infer_types(self, cur: Any, new_cols: list[str]) -> dict[str, str]:
        """The narrowest type every value of each new (text-staged) column fits.

        One pass classifies each value by its shape (bit_or of a code per value): integers, decimals,
        true/false, ISO 8601 timestamps (`YYYY-MM-DD[T ]HH:MM…`); a second pass confirms the numeric and
        timestamp candidates with pg_input_is_valid (PostgreSQL 16+: ranges, real dates, zones).
        """
        if not new_cols:
            return {}
        classify = []
        for c in new_cols:
            # Cheap shape tests first (PostgreSQL's regex engine and failing input functions are slow).
            classify.append(sql.SQL(
                "bit_or(CASE WHEN {c} IS NULL THEN 0 "
                "WHEN {c} LIKE '____-__-__T__:__%' OR {c} LIKE '____-__-__ __:__%' THEN 8 "
                "WHEN {c} IN ('true', 'false', 'True', 'False', 'TRUE', 'FALSE') THEN 4 "
                "WHEN {c} ~ '^-?[0-9]' THEN "
                "  CASE WHEN {c} ~ '^-?0[0-9]' THEN 16 WHEN {c} ~ {i} THEN 1 WHEN {c} ~ {f} THEN 2 ELSE 16 END "
                "ELSE 16 END)").format(
                c=_ident(c), i=sql.Literal(_INT_RE), f=sql.Literal(_FLOAT_RE)))
        cur.execute(sql.SQL("SELECT {} FROM _stackql_stage").format(sql.SQL(", ").join(classify)))
        masks = cur.fetchone()
        types: dict[str, str] = {}
        for c, mask in zip(new_cols, masks):
            mask = mask or 0
            if mask == 1:
                types[c] = "bigint"
            elif mask in (2, 3):
                types[c] = "double precision"
            elif mask == 4:
                types[c] = "boolean"
            elif mask == 8:
                types[c] = "timestamptz"
            else:
                types[c] = "text"
        candidates = [c for c in new_cols if types[c] not in ("text", "boolean")]
        if candidates:
            cur.execute("SELECT current_setting('server_version_num')::int >= 160000")
        if candidates and cur.fetchone()[0]:
            cur.execute(sql.SQL("SELECT {} FROM _stackql_stage").format(sql.SQL(", ").join(
                sql.SQL("bool_and({c} IS NULL OR pg_input_is_valid({c}, {t}))").format(
                    c=_ident(c), t=sql.Literal(types[c])) for c in candidates)))
            for c, ok in zip(candidates, cur.fetchone()):
                if not ok:
                    types[c] = "text"
        return types

    def _merge_history(self, cur: Any, target: sql.Identifier, stage: sql.Identifier, casts: sql.Composable,
                       mapped: list[str], table_cols: list[str], keys: list[str], rid: sql.Literal,
                       ts: sql.Literal) -> HistoryCounts:
        new = _ident("_stackql_new")
        # Hashes over the typed values as PostgreSQL prints a record (NULL and '' differ), columns by name.
        row_expr = sql.SQL("md5(ROW({})::text)").format(
            sql.SQL(", ").join(sql.SQL("x.{}").format(_ident(c)) for c in sorted(mapped)) if mapped else sql.SQL(""))
        if keys:
            key_expr = sql.SQL("md5(ROW({})::text)").format(
                sql.SQL(", ").join(sql.SQL("x.{}").format(_ident(k)) for k in keys))
            cur.execute(sql.SQL(
                "CREATE TEMP TABLE {new} ON COMMIT DROP AS "
                "SELECT x.*, {row} AS _row_hash, {key} AS _key_hash "
                "FROM (SELECT {casts} FROM {stage} s) x").format(
                new=new, row=row_expr, key=key_expr, casts=casts, stage=stage))
            self._step("history hashes")
            cur.execute(sql.SQL(
                "SELECT {keys}, d.n FROM (SELECT _key_hash, count(*) AS n FROM {new} GROUP BY _key_hash "
                "HAVING count(*) > 1 LIMIT 1) d JOIN {new} x ON x._key_hash = d._key_hash LIMIT 1").format(
                keys=sql.SQL(", ").join(sql.SQL("x.{}").format(_ident(k)) for k in keys), new=new))
            dup = cur.fetchone()
            if dup is not None:
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, dup[:-1]))
                raise UserFacingError(
                    f"The key columns ({', '.join(keys)}) do not identify one row: {shown} appears {dup[-1]} times in "
                    "this result. The table was left unchanged. Choose key columns that are unique per resource, then "
                    "run again.", ErrorKind.SCHEMA)
            self._step("history key check")
        else:
            # Without key columns a row is identified by its content; identical rows are numbered.
            cur.execute(sql.SQL(
                "CREATE TEMP TABLE {new} ON COMMIT DROP AS "
                "SELECT y.*, CASE WHEN y._n = 1 THEN y._row_hash ELSE md5(y._row_hash || ':' || y._n) END AS _key_hash "
                "FROM (SELECT x.*, {row} AS _row_hash, row_number() OVER (PARTITION BY {row}) AS _n "
                "      FROM (SELECT {casts} FROM {stage} s) x) y"
            ).format(new=new, row=row_expr, casts=casts, stage=stage))
            cur.execute(sql.SQL("ALTER TABLE {} DROP COLUMN _n").format(new))
            self._step("history hashes")
        # One pass pairs this run's rows with the current versions (a hash full join on the key).
        diff = _ident("_stackql_diff")
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {diff} ON COMMIT DROP AS "
            "SELECT coalesce(n._key_hash, c._key_hash) AS _key_hash, "
            "  CASE WHEN c._key_hash IS NULL THEN 'new' "
            "       WHEN n._key_hash IS NULL THEN CASE WHEN c._is_deleted THEN 'absent' ELSE 'gone' END "
            "       WHEN c._is_deleted THEN 'back' "
            "       WHEN c._row_hash = n._row_hash THEN 'same' ELSE 'changed' END AS what "
            "FROM {new} n FULL JOIN (SELECT _key_hash, _row_hash, _is_deleted FROM {t} WHERE _valid_to IS NULL) c "
            "  ON c._key_hash = n._key_hash").format(diff=diff, new=new, t=target))
        cur.execute(sql.SQL("DELETE FROM {} WHERE what = 'absent'").format(diff))
        cur.execute(sql.SQL("SELECT what, count(*) FROM {} GROUP BY what").format(diff))
        counts = dict(cur.fetchall())
        self._step("history diff")

        # 1. Seen again, unchanged: only _last_seen moves (a HOT update: no indexed column changes).
        unchanged = 0
        if counts.get("same"):
            cur.execute(sql.SQL(
                "UPDATE {t} t SET _last_seen = {ts} FROM {diff} d "
                "WHERE d.what = 'same' AND t._key_hash = d._key_hash AND t._valid_to IS NULL").format(
                t=target, ts=ts, diff=diff))
            unchanged = cur.rowcount
        self._step("history unchanged")
        moved = counts.get("changed", 0) + counts.get("gone", 0) + counts.get("back", 0)
        if moved:
            cur.execute(sql.SQL("DELETE FROM {} WHERE what = 'same'").format(diff))
            cur.execute(sql.SQL("ANALYZE {}").format(diff))
        # 2. Close current versions that changed, disappeared, or are tombstones of returning resources.
        closed = _ident("_stackql_closed")
        cur.execute(sql.SQL("CREATE TEMP TABLE {closed} ON COMMIT DROP AS SELECT * FROM {t} WITH NO DATA").format(
            closed=closed, t=target))
        closed_count = 0
        if moved:
            cur.execute(sql.SQL(
                "WITH c AS (UPDATE {t} t SET _valid_to = {ts}, _closed_by_run_id = {rid} FROM {diff} d "
                "  WHERE d.what IN ('changed', 'gone', 'back') AND t._key_hash = d._key_hash AND t._valid_to IS NULL "
                "  RETURNING t.*) "
                "INSERT INTO {closed} SELECT * FROM c").format(t=target, ts=ts, rid=rid, diff=diff, closed=closed))
            closed_count = cur.rowcount
        self._step("history close")
        # 3. Open versions for new, changed and returning resources (first seen kept from earlier versions).
        meta_cols = _idents([RUN_ID, COLLECTED_AT, "_key_hash", "_row_hash", "_valid_from", "_valid_to",
                             "_first_seen", "_last_seen", "_is_deleted", "_closed_by_run_id"])
        opened = 0
        if counts.get("new", 0) + counts.get("changed", 0) + counts.get("back", 0):
            everything_new = set(counts) == {"new"}  # a first run: no need to pick rows through the diff
            source = sql.SQL("{new} n LEFT JOIN {closed} c ON c._key_hash = n._key_hash").format(new=new, closed=closed)
            if not everything_new:
                source = sql.SQL("{new} n JOIN {diff} d ON d._key_hash = n._key_hash "
                                 "AND d.what IN ('new', 'changed', 'back') "
                                 "LEFT JOIN {closed} c ON c._key_hash = n._key_hash").format(
                    new=new, diff=diff, closed=closed)
            cur.execute(sql.SQL(
                "INSERT INTO {t} ({data}{comma}{meta}) "
                "SELECT {ndata}{comma}{rid}, {ts}, n._key_hash, n._row_hash, {ts}, NULL, "
                "       coalesce(c._first_seen, {ts}), {ts}, false, NULL FROM {source}").format(
                t=target, data=_idents(mapped), comma=sql.SQL(", ") if mapped else sql.SQL(""), meta=meta_cols,
                ndata=sql.SQL(", ").join(sql.SQL("n.{}").format(_ident(c)) for c in mapped), rid=rid, ts=ts,
                source=source))
            opened = cur.rowcount
        self._step("history open")
        # 4. Tombstones for resources that disappeared: their last values, marked deleted.
        deleted = 0
        if counts.get("gone"):
            cur.execute(sql.SQL(
                "INSERT INTO {t} ({data}{comma}{meta}) "
                "SELECT {cdata}{comma}{rid}, {ts}, c._key_hash, c._row_hash, {ts}, NULL, c._first_seen, "
                "       c._last_seen, true, NULL "
                "FROM {closed} c JOIN {diff} d ON d._key_hash = c._key_hash AND d.what = 'gone'").format(
                t=target, data=_idents(table_cols), comma=sql.SQL(", ") if table_cols else sql.SQL(""),
                meta=meta_cols, cdata=sql.SQL(", ").join(sql.SQL("c.{}").format(_ident(c)) for c in table_cols),
                rid=rid, ts=ts, closed=closed, diff=diff))
            deleted = cur.rowcount
        self._step("history tombstones")
        return HistoryCounts(opened=opened, closed=closed_count, deleted=deleted, unchanged=unchanged)

    # ---------------------------------------------------------------- after the write
    def analyze(self) -> bool:
        """ANALYZE the table after a write, so planners (analysts' queries, the views refreshed next)
        and row estimates see the new contents at once instead of after autovacuum's next pass.

        Best effort: a failure (e.g. the role may not analyze it) is logged and reported as False.
        """
        import psycopg2

        t0 = time.monotonic()
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql.SQL("ANALYZE {}").format(_ident(self.schema, self.table)))
            self._conn.commit()
        except psycopg2.Error as exc:
            self._rollback()
            log.warning("event=analyze_failed table=%s error=%s", self.qualified,
                        json.dumps((getattr(exc.diag, "message_primary", None) or str(exc)).strip()))
            return False
        log.debug("event=analyzed table=%s elapsed_s=%.3f", self.qualified, time.monotonic() - t0)
        return True

    def refresh_dependants(self) -> RefreshResult:
        """Refresh every materialized view reading the table (dependency order), each in its own transaction."""
        import psycopg2

        found = [d for d in self.dependants() if d.kind == "materialized view"]
        refreshed, concurrently, failed = [], [], []
        for view in found:
            concurrent = view.concurrent_ok and view.populated
            statement = sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
                sql.SQL("CONCURRENTLY ") if concurrent else sql.SQL(""), _ident(view.schema, view.name))
            t0 = time.monotonic()
            try:
                with self._conn.cursor() as cur:
                    cur.execute(statement)
                    # Fresh statistics for the view's readers (and the inventory page's row estimate).
                    cur.execute(sql.SQL("ANALYZE {}").format(_ident(view.schema, view.name)))
                self._conn.commit()
            except psycopg2.Error as exc:
                self._rollback()
                message = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
                failed.append((view.qualified, message))
                log.warning("event=view_refresh_failed view=%s error=%s", json.dumps(view.qualified),
                            json.dumps(message))
                continue
            refreshed.append(view.qualified)
            if concurrent:
                concurrently.append(view.qualified)
            log.info("event=view_refreshed view=%s concurrently=%s elapsed_s=%.3f", json.dumps(view.qualified),
                     concurrent, time.monotonic() - t0)
        return RefreshResult(tuple(refreshed), tuple(concurrently), tuple(failed))


def _index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name) <= _MAX_IDENT_BYTES:
        return name
    return f"{table[:40]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}_{suffix}"


# ============================================================================ opening a target


class _Connection:
    """A dedicated psycopg2 connection from the app's engine, detached from its pool.

    Detached because a session advisory lock and session settings must not outlive the write in a
    pooled connection: closing this one really closes it (and the server releases the lock).
    """

    def __init__(self) -> None:
        import sqlalchemy as sa

        from stackql_inventory.db.engine import get_engine, unreachable_error

        try:
            self._pooled = get_engine().raw_connection()
        except sa.exc.SQLAlchemyError as exc:
            raise unreachable_error(exc) from exc
        self.raw = self._pooled.driver_connection
        self._pooled.detach()
        self.raw.autocommit = False
        with self.raw.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")  # timestamps without a zone are UTC; hashes are stable
            # Staging tables are temporary: give them memory before the first one exists in this session.
            cur.execute("SET temp_buffers = '256MB'")
        self.raw.commit()

    def close(self) -> None:
        """Close the session itself (the server rolls back anything open and drops its advisory locks)."""
        try:
            self.raw.close()
        except Exception as exc:  # the socket may already be gone: the server cleans up either way
            log.warning("event=writer_close_failed error=%s", type(exc).__name__)
        self._pooled = None


@contextlib.contextmanager
def open_target(schema: str, table: str, *, wait: bool = False) -> Iterator[TargetSession]:
    """Lock a target for writing: yields a TargetSession; raises TargetBusy when another session holds it.

    The lock is a session advisory lock on a dedicated connection: it is released when the block
    ends, and by the server when the process dies.
    """
    validate_name(schema, "schema")
    validate_name(table, "table")
    conn = _Connection()
    key = lock_key(schema, table)
    got = False
    try:
        with conn.raw.cursor() as cur:
            if wait:
                cur.execute("SELECT pg_advisory_lock(%s)", (key,))
                got = True
            else:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                got = bool(cur.fetchone()[0])
        conn.raw.commit()
        if not got:
            raise TargetBusy(f"{schema}.{table}")
        yield TargetSession(conn.raw, schema, table)
    finally:
        if got:
            # Unlock explicitly: a closed session's locks are released only once its server process
            # has wound down, a few milliseconds later, and the next run may already be asking.
            try:
                conn.raw.rollback()
                with conn.raw.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
                conn.raw.commit()
            except Exception as exc:  # a dead connection: the server releases the lock itself
                log.warning("event=advisory_unlock_failed table=%s.%s error=%s", schema, table, type(exc).__name__)
        conn.close()


def write(schema: str, table: str, columns: Sequence[str], rows: Iterable[Sequence[str | None]], *, mode: str,
          run_id: int, collected_at: datetime | None = None, key_columns: Sequence[str] = (),
          provenance: Provenance | None = None, wait: bool = True) -> tuple[WriteResult, RefreshResult]:
    """Lock, write, analyze and refresh dependants in one call (for callers without their own query stream)."""
    with open_target(schema, table, wait=wait) as target:
        result = target.write(columns, rows, mode=mode, run_id=run_id,
                              collected_at=collected_at or target.now(), key_columns=key_columns,
                              provenance=provenance)
        target.analyze()
        refresh = target.refresh_dependants()
    return result, refresh


def dependants(schema: str, table: str) -> list[Dependant]:
    """Views and materialized views that read `schema.table`, in refresh order (no lock taken)."""
    validate_name(schema, "schema")
    validate_name(table, "table")
    conn = _Connection()
    try:
        return TargetSession(conn.raw, schema, table).dependants()
    finally:
        conn.close()


def refresh_materialized_view(actor: Any, schema: str, name: str) -> RefreshResult:
    """Refresh one materialized view of the inventory on behalf of `actor` (an editor), CONCURRENTLY if possible."""
    from stackql_inventory.services import identity

    identity.require_editor(actor, "refresh materialized views")
    validate_name(schema, "schema")
    validate_name(name, "materialized view")
    import psycopg2

    holder = _Connection()
    conn = holder.raw
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relispopulated, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique "
                "AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'm'", (schema, name))
            found = cur.fetchone()
        conn.rollback()
        if found is None:
            raise UserFacingError(f"There is no materialized view {schema}.{name}.", ErrorKind.NOT_FOUND)
        concurrent = bool(found[0] and found[1])
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
                    sql.SQL("CONCURRENTLY ") if concurrent else sql.SQL(""), _ident(schema, name)))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            message = (getattr(exc.diag, "message_primary", None) or str(exc)).strip()
            raise UserFacingError(f"Refreshing {schema}.{name} failed: {message}.", ErrorKind.DATABASE) from None
        qualified = f"{schema}.{name}"
        return RefreshResult((qualified,), (qualified,) if concurrent else (), ())
    finally:
        holder.close()
