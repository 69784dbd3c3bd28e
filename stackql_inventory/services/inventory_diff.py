"""Changes between two runs of a `history` or `append` inventory table: rows added, removed and changed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from stackql_inventory.db import inventory_catalog, inventory_diff, inventory_runs
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services.errors import ErrorKind, UserFacingError

ROWS_PER_KIND = 200            # rows shown per kind (added / removed / changed); totals are always exact
DIFF_TIMEOUT_MS = 60_000
RUN_CHOICES = 50
KINDS = ("added", "removed", "changed")


@dataclass(frozen=True)
class RunChoice:
    """A run the user can compare."""

    run_id: int
    finished_at: datetime | None
    rows: int | None


@dataclass(frozen=True)
class DiffCell:
    column: str
    old: str | None
    new: str | None
    changed: bool


@dataclass(frozen=True)
class DiffRow:
    kind: str                   # added | removed | changed
    key: str                    # the key columns' values, for display
    cells: list[DiffCell]


@dataclass(frozen=True)
class RunDiff:
    """What changed from `from_run` to `to_run`."""

    table: str
    mode: str                   # history | append
    from_run: int
    to_run: int
    columns: list[str]          # result columns (runner bookkeeping columns left out)
    key_columns: list[str]
    totals: dict[str, int]
    rows: list[DiffRow]
    truncated: bool             # more rows than shown
    note: str
    elapsed_ms: float


@dataclass(frozen=True)
class DiffTarget:
    """How a table can be compared (from its schedule, the ledger and its columns)."""

    table: str
    mode: str                   # history | append | replace | ""
    key_columns: list[str]
    columns: list[str]


def _target(s: Any, table: str) -> DiffTarget:
    rel = inventory_catalog.relation(s, table)
    if rel is None or rel.kind == "m":
        raise UserFacingError(f"stackql_inventory.{table} is not an inventory table (or no longer exists).",
                              ErrorKind.NOT_FOUND)
    cols = [c.name for c in inventory_catalog.columns(s, rel.oid)]
    facts = inventory_diff.target_mode(s, table)
    mode = facts.schedule_mode or facts.run_mode or ""
    if not mode:
        if all(c in cols for c in inventory_diff.HISTORY_COLUMNS):
            mode = "history"
        elif "_stackql_run_id" in cols:
            mode = "append"
    keys = [k for k in (facts.key_columns or [])]
    missing = [k for k in keys if k not in cols]
    if missing:
        raise UserFacingError(
            f"The schedule's key column(s) {', '.join(missing)} are not in stackql_inventory.{table}. "
            "Fix the schedule's key columns.", ErrorKind.VALIDATION)
    content = [c for c in cols if c not in inventory_diff.META_COLUMNS]
    return DiffTarget(table, mode, keys, content)


def _require_comparable(t: DiffTarget, cols_present: set[str]) -> None:
    if t.mode == "replace":
        raise UserFacingError(
            f"{t.table} is written in replace mode, which keeps only the latest result, so there are no two runs "
            "to compare. Use append or history mode to keep earlier runs.", ErrorKind.VALIDATION)
    if t.mode == "history":
        missing = [c for c in inventory_diff.HISTORY_COLUMNS if c not in cols_present]
        if missing:
            raise UserFacingError(f"{t.table} lacks the history columns {', '.join(missing)}.", ErrorKind.SCHEMA)
    elif t.mode == "append":
        if "_stackql_run_id" not in cols_present:
            raise UserFacingError(f"{t.table} has no _stackql_run_id column to tell runs apart.", ErrorKind.SCHEMA)
    else:
        raise UserFacingError(f"Cannot tell how {t.table} is written (no schedule, run or layout says so).",
                              ErrorKind.VALIDATION)


def run_choices(table: str) -> tuple[str, list[RunChoice]]:
    """(mode, runs newest first) for the run pickers; the ledger first, else the run ids found in the table."""
    with session_scope() as s:
        target = _target(s, table)
        if target.mode not in ("history", "append"):
            return target.mode, []
        runs = [RunChoice(int(r.id), r.finished_at or r.started_at, r.rows_written)
                for r in inventory_runs.success_runs(s, table, limit=RUN_CHOICES)]
        if runs:
            return target.mode, runs
        try:
            with s.begin_nested():
                found = inventory_diff.run_ids_in_data(s, table, history=target.mode == "history",
                                                       limit=RUN_CHOICES, timeout_ms=3_000)
        except sa.exc.OperationalError:
            found = []  # too big to scan quickly, and the ledger knows no runs: nothing to offer
        return target.mode, [RunChoice(int(rid), at, None) for rid, at in found]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def diff_runs(table: str, from_run: int, to_run: int, *, rows_per_kind: int = ROWS_PER_KIND) -> RunDiff:
    """Rows added, removed and changed from run `from_run` to run `to_run` of `table`.

    `history` tables compare the SCD2 states as of the two runs; `append` tables compare the rows each
    run wrote, keyed on the schedule's key columns (whole rows when it has none).
    """
    if from_run == to_run:
        raise UserFacingError("Pick two different runs to compare.", ErrorKind.VALIDATION)
    started = time.perf_counter()
    note = ""
    with session_scope() as s:
        target = _target(s, table)
        rel = inventory_catalog.relation(s, table)
        present = {c.name for c in inventory_catalog.columns(s, rel.oid)}
        _require_comparable(target, present)
        try:
            with s.begin_nested():
                if target.mode == "history":
                    raw = inventory_diff.history_diff(s, table, from_run, to_run, target.key_columns,
                                                      rows_per_kind, DIFF_TIMEOUT_MS)
                else:
                    raw = inventory_diff.append_diff(s, table, from_run, to_run, target.key_columns,
                                                     rows_per_kind, DIFF_TIMEOUT_MS)
                    if target.key_columns:
                        dups = [inventory_diff.duplicate_keys(s, table, r, target.key_columns)
                                for r in (from_run, to_run)]
                        if any(dups):
                            note = (f"Some keys occur more than once in a run ({dups[0]:,} in run {from_run}, "
                                    f"{dups[1]:,} in run {to_run}); one row per key was compared.")
        except sa.exc.OperationalError as e:
            if getattr(getattr(e, "orig", None), "pgcode", "") == "57014":  # query_canceled (statement_timeout)
                raise UserFacingError(
                    f"Comparing the two runs of {table} took longer than {DIFF_TIMEOUT_MS // 1000} s and was stopped. "
                    "Compare runs closer together, or add key columns to the schedule.", ErrorKind.TIMEOUT) from e
            raise
    if not target.key_columns and target.mode == "append":
        note = note or "The schedule has no key columns, so whole rows are compared: a changed row shows as removed and added."
    totals = dict.fromkeys(KINDS, 0)
    rows: list[DiffRow] = []
    for kind, old, new, total in raw:
        totals[kind] = int(total)
        old, new = old or {}, new or {}
        cells = [DiffCell(c, _text(old.get(c)), _text(new.get(c)),
                          kind == "changed" and old.get(c) != new.get(c))
                 for c in target.columns]
        source = new or old
        key = " · ".join(_text(source.get(k)) or "NULL" for k in target.key_columns) if target.key_columns else ""
        rows.append(DiffRow(kind, key, cells))
    return RunDiff(
        table=table, mode=target.mode, from_run=from_run, to_run=to_run, columns=target.columns,
        key_columns=target.key_columns, totals=totals, rows=rows,
        truncated=any(totals[k] > rows_per_kind for k in KINDS), note=note,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )
