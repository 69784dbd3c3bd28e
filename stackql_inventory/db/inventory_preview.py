"""SQL for previewing inventory tables: keyset pages (unique key or physical ctid windows) and CSV export."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from psycopg2 import sql
from sqlmodel import Session

from stackql_inventory.db.inventory_catalog import driver_connection, qualified, run

FILTER_OPS = ("contains", "equals", "is_null", "not_null")


@dataclass(frozen=True)
class Filter:
    """`column <op> value`; the column is checked against the table's columns before it gets here."""

    column: str
    op: str
    value: str = ""


_CURRENT = sql.SQL("t._valid_to IS NULL AND NOT coalesce(t._is_deleted, false)")


def _where(flt: Filter | None, current_only: bool = False) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause: the filter (value bound), and for SCD2 tables optionally only current versions."""
    where, params = _filter(flt)
    if current_only:
        where = sql.SQL("{} AND {}").format(_CURRENT, where)
    return where, params


def _filter(flt: Filter | None) -> tuple[sql.Composable, list[Any]]:
    if flt is None:
        return sql.SQL("TRUE"), []
    col = sql.SQL("t.{}").format(sql.Identifier(flt.column))
    if flt.op == "contains":
        pattern = "%" + flt.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return sql.SQL("{}::text ILIKE %s ESCAPE '\\'").format(col), [pattern]
    if flt.op == "equals":
        return sql.SQL("{}::text = %s").format(col), [flt.value]
    if flt.op == "is_null":
        return sql.SQL("{} IS NULL").format(col), []
    if flt.op == "not_null":
        return sql.SQL("{} IS NOT NULL").format(col), []
    raise ValueError(f"unknown filter op {flt.op!r}")


def _text_columns(columns: Sequence[str]) -> sql.Composable:
    # Aliased: an output column named like a table column would capture `ORDER BY <column>` (by its text!).
    return sql.SQL(", ").join(sql.SQL("t.{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"_c{i}"))
                              for i, c in enumerate(columns))


def page_by_key(session: Session, table: str, columns: Sequence[str], key: Sequence[str],
                after: Sequence[Any] | None, flt: Filter | None, limit: int, *, current_only: bool = False
                ) -> list[tuple]:
    """Up to `limit` rows after `after` in key order: each row is the columns as text, then the key values.

    `(k1, k2) > (%s, %s) ORDER BY k1, k2` is answered by the unique index, so any page costs one
    index descent plus `limit` rows.
    """
    where, params = _where(flt, current_only)
    keys = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in key)
    key_out = sql.SQL(", ").join(sql.SQL("t.{} AS {}").format(sql.Identifier(k), sql.Identifier(f"_k{i}"))
                                 for i, k in enumerate(key))
    if after is not None:
        where = sql.SQL("{} AND ({}) > ({})").format(where, keys, sql.SQL(", ").join(sql.Placeholder() * len(key)))
        params = [*params, *after]
    stmt = sql.SQL("SELECT {}, {} FROM {} t WHERE {} ORDER BY {} LIMIT %s").format(
        _text_columns(columns), key_out, qualified(table), where, keys)
    return list(run(session, stmt, (*params, limit)))


def page_by_ctid(session: Session, table: str, columns: Sequence[str], after: str, flt: Filter | None,
                 limit: int, rows_per_block: float, block_size: int, *, current_only: bool = False) -> list[tuple]:
    """Up to `limit` rows physically after ctid `after`; each row is the columns as text, then its ctid.

    PostgreSQL cannot return `ORDER BY ctid` from a TID range scan without sorting everything after
    the cursor, so read bounded block windows (`ctid > after AND ctid < (b, 0)`), sort each window, and
    widen the window until the page is full or the table ends: page 1,000 reads as few blocks as page 1.
    """
    where, params = _where(flt, current_only)
    size = run(session, "SELECT pg_relation_size(%s::regclass)",
               (qualified(table).as_string(driver_connection(session)),)).scalar_one()
    n_blocks = -(-int(size) // block_size)
    start_block = int(after.strip("()").split(",")[0])
    window = max(4, int((limit + 1) / max(rows_per_block, 1.0) * 1.25) + 1)
    stmt = sql.SQL("SELECT {}, t.ctid::text AS _tid FROM {} t WHERE t.ctid > %s::tid AND t.ctid < %s::tid AND {} "
                   "ORDER BY t.ctid LIMIT %s").format(_text_columns(columns), qualified(table), where)
    out: list[tuple] = []
    cursor_tid, block = after, start_block
    while len(out) < limit and block < n_blocks:
        end_block = block + window
        out.extend(run(session, stmt, (cursor_tid, f"({end_block},0)", *params, limit - len(out))))
        cursor_tid, block = f"({end_block - 1},65535)", end_block
        window *= 2
    return out


def copy_csv(session: Session, table: str, columns: Sequence[str], flt: Filter | None, out: IO[bytes], *,
             current_only: bool = False) -> None:
    """Stream the table's rows (matching the filter) as CSV with a header into `out` (COPY, no buffering)."""
    where, params = _where(flt, current_only)
    cur = driver_connection(session).cursor()
    select = sql.SQL("SELECT {} FROM {} t WHERE {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), qualified(table), where)
    inner = cur.mogrify(select, params).decode()
    cur.copy_expert(f"COPY ({inner}) TO STDOUT WITH (FORMAT csv, HEADER true)", out)
