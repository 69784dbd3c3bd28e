"""Inventory catalogue: the tables the schedules collected into `stackql_inventory`, with counts, freshness and runs."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from stackql_inventory import formatting
from stackql_inventory.db import inventory_catalog, inventory_runs
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import RUN_STATUSES
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.inventory_freshness import Freshness, Verdict, classify

log = logging.getLogger(__name__)

# Tables whose estimate is at most this many rows (or unknown) get an exact count; the count reads at
# most EXACT_COUNT_MAX + 1 rows, so a stale estimate can never turn it into a full scan.
EXACT_COUNT_MAX = 10_000
RECENT = timedelta(hours=24)
# How long the list waits for a table a run holds exclusively before falling back to catalog figures.
LOCK_WAIT_MS = 300
_LOCKED_NOTE = ("A run is rewriting a table right now, so sizes come from the catalog and counts are estimates; "
                "reload in a moment.")
LEDGER_LIMIT = 200
# The `Last refresh:` line the inventory writer puts in a table's COMMENT (an ISO time, for other readers).
_COMMENT_REFRESH = re.compile(r"^Last refresh: (?P<at>\d{4}-\d\d-\d\d[T ][0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)"
                              r"(?P<rest>.*)$", re.MULTILINE)
_COMMENT_ROWS = re.compile(r"\((\d+) rows\)")

# Most urgent first, for "sort by freshness".
_FRESHNESS_ORDER = {f: i for i, f in enumerate((
    Freshness.FAILING, Freshness.EXPIRED, Freshness.STALE, Freshness.UNKNOWN, Freshness.PENDING,
    Freshness.PAUSED, Freshness.FRESH, Freshness.MANUAL))}
SORT_KEYS = ("name", "rows", "size", "refreshed", "freshness")


@dataclass(frozen=True)
class RowCount:
    """A row count that says how it was obtained."""

    value: int | None          # None: unknown (materialized view not populated)
    exact: bool = False        # counted
    lower_bound: bool = False  # more than `value` rows (never analysed and above the exact threshold)

    def text(self) -> str:
        """`1,234` (exact), `≈ 5,000,000` (planner estimate), `> 10,000`, or `—`."""
        if self.value is None:
            return "—"
        if self.exact:
            return formatting.count(self.value)
        if self.lower_bound:
            return f"> {formatting.count(self.value)}"
        return f"≈ {formatting.count(self.value)}"


@dataclass(frozen=True)
class InventoryTable:
    """One table or materialized view of the inventory schema, as the browser lists it."""

    name: str
    kind: str                      # "table" | "materialized view"
    rows: RowCount
    size_bytes: int
    comment: str
    write_mode: str                # replace | append | history | "" (unknown; materialized views)
    freshness: Verdict
    populated: bool = True
    schedule_id: int | None = None
    cron_expression: str = ""
    timezone: str = "UTC"
    schedule_active: bool = False
    key_columns: tuple[str, ...] = ()
    query_id: int | None = None
    query_name: str = ""
    provider: str = ""
    last_success_at: datetime | None = None
    last_success_rows: int | None = None
    last_status: str = ""          # latest finished run: success | failed | ""
    last_error: str = ""
    running: bool = False          # a run is queued or running for this table now
    history_layout: bool = False


@dataclass(frozen=True)
class Metrics:
    """The summary strip above the list."""

    tables: int
    total_rows: int
    total_rows_exact: bool
    refreshed_24h: int
    stale: int          # stale + expired
    failing: int        # failing tables + schedules whose last run failed before their table existed

    def total_rows_text(self) -> str:
        return formatting.count(self.total_rows) if self.total_rows_exact else f"≈ {formatting.count(self.total_rows)}"


@dataclass(frozen=True)
class Catalogue:
    """Everything the list needs, read in one pass."""

    tables: list[InventoryTable]
    metrics: Metrics
    # Why some counts are estimates although small ('' normally): a run held a table locked.
    note: str = ""
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class LedgerRun:
    """One row of the runs ledger view."""

    id: int
    target: str
    query_name: str
    trigger: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    rows_written: int | None
    duration_s: float | None
    error_message: str
    created_by: str


@dataclass(frozen=True)
class RunPoint:
    """Rows a successful run collected into a table (one point of the per-table chart)."""

    run_id: int
    finished_at: datetime | None
    rows: int | None


def estimate_rows(reltuples: float, relpages: int, heap_bytes: int, block_size: int) -> int | None:
    """The planner's row estimate: tuple density from the last ANALYZE times the table's current size.

    None when the table was never analysed (reltuples -1) or was analysed empty and has grown since.
    """
    if reltuples < 0:
        return None
    if relpages <= 0:
        return 0 if heap_bytes == 0 else None
    return int(round(reltuples / relpages * (heap_bytes / block_size)))


def list_tables(now: datetime | None = None) -> list[InventoryTable]:
    """Tables and materialized views of `stackql_inventory` (see `catalogue`)."""
    return catalogue(now).tables


def catalogue(now: datetime | None = None) -> Catalogue:
    """Every inventory table and materialized view with counts, freshness, schedule and last runs, plus metrics.

    Never runs an unbounded `count(*)`: small tables are counted exactly (at most EXACT_COUNT_MAX + 1
    rows read each), the others show the planner's estimate.
    """
    now = now or datetime.now(UTC)
    note = ""
    with session_scope() as s:
        bsize = inventory_catalog.block_size(s)
        try:
            with s.begin_nested():
                inventory_catalog.set_lock_timeout(s, LOCK_WAIT_MS)
                rows = inventory_catalog.list_relations(s, block_size=bsize)
        except sa.exc.OperationalError as e:
            if not inventory_catalog.is_lock_timeout(e):
                raise
            log.info("inventory list: a table is locked by a run; sizes from the catalog")
            rows = inventory_catalog.list_relations(s, sizes=False, block_size=bsize)
            note = _LOCKED_NOTE
        estimates = {r.name: estimate_rows(r.reltuples, r.relpages, r.heap_bytes, bsize) for r in rows}
        to_count = [r.name for r in rows if r.populated and (estimates[r.name] is None
                                                              or estimates[r.name] <= EXACT_COUNT_MAX)]
        counts: dict[str, int] = {}
        if not note:
            try:
                with s.begin_nested():
                    counts = inventory_catalog.capped_counts(s, to_count, EXACT_COUNT_MAX,
                                                             lock_timeout_ms=LOCK_WAIT_MS)
            except sa.exc.OperationalError as e:
                if not inventory_catalog.is_lock_timeout(e):
                    raise
                log.info("inventory counts skipped: a table is locked by a run")
                note = _LOCKED_NOTE
        no_table_failures = inventory_catalog.failed_schedules_without_table(s)
    tables = [_table(r, estimates[r.name], counts.get(r.name), now, counted_ok=not note) for r in rows]
    return Catalogue(tables, _metrics(tables, now, no_table_failures), note)


def _row_count(populated: bool, estimate: int | None, counted: int | None, *, tried: bool = True) -> RowCount:
    if not populated or (estimate is None and not tried):
        return RowCount(None)
    if counted is not None:
        if counted <= EXACT_COUNT_MAX:
            return RowCount(counted, exact=True)
        return RowCount(EXACT_COUNT_MAX, lower_bound=True)
    if estimate is None:
        return RowCount(EXACT_COUNT_MAX, lower_bound=True)
    return RowCount(estimate)


def _table(r: sa.Row, estimate: int | None, counted: int | None, now: datetime, *, counted_ok: bool = True
           ) -> InventoryTable:
    is_view = r.kind == "m"
    write_mode = "" if is_view else (r.schedule_write_mode or r.run_write_mode
                                     or ("history" if r.history_layout else ""))
    verdict = classify(
        now=now, cron_expression=r.cron_expression, timezone=r.timezone,
        is_active=bool(r.is_active) if r.schedule_id is not None else True,
        last_success_at=r.last_success_at, last_status=r.last_status,
    )
    return InventoryTable(
        name=r.name, kind="materialized view" if is_view else "table",
        rows=_row_count(bool(r.populated), estimate, counted, tried=counted_ok),
        size_bytes=int(r.size_bytes or 0), comment=r.comment or "", write_mode=write_mode, freshness=verdict,
        populated=bool(r.populated), schedule_id=r.schedule_id, cron_expression=r.cron_expression or "",
        timezone=r.timezone or "UTC", schedule_active=bool(r.is_active), key_columns=tuple(r.key_columns or ()),
        query_id=r.query_id, query_name=r.query_name or "", provider=r.provider or "",
        last_success_at=r.last_success_at, last_success_rows=r.last_success_rows, last_status=r.last_status or "",
        last_error=r.last_error or "", running=r.active_status is not None, history_layout=bool(r.history_layout),
    )


def _metrics(tables: list[InventoryTable], now: datetime, no_table_failures: int = 0) -> Metrics:
    """`no_table_failures`: schedules whose last run failed before their table existed (failed last runs too)."""
    data = [t for t in tables if t.kind == "table"]
    return Metrics(
        tables=len(tables),
        total_rows=sum(max(t.rows.value or 0, 0) for t in data),
        total_rows_exact=all(t.rows.exact for t in data),
        refreshed_24h=sum(1 for t in tables if t.last_success_at and now - t.last_success_at <= RECENT),
        stale=sum(1 for t in tables if t.freshness.state in (Freshness.STALE, Freshness.EXPIRED)),
        failing=sum(1 for t in tables if t.freshness.state is Freshness.FAILING) + no_table_failures,
    )


def comment_for_display(comment: str, now: datetime) -> str:
    """A table's COMMENT as the details panel shows it, formatted like the rest of the page.

    The writer records its `Last refresh:` time in ISO 8601 for people reading the table elsewhere; here it
    reads `2026-11-26 17:41 UTC (12 min ago) by run 4 (1,234 rows)`. Other text is left as it is.
    """
    def refresh_line(m: re.Match[str]) -> str:
        try:
            at = datetime.fromisoformat(m["at"].replace("Z", "+00:00"))
        except ValueError:
            return m[0]
        rows = _COMMENT_ROWS.sub(lambda r: f"({formatting.count(int(r[1]))} row{'' if r[1] == '1' else 's'})",
                                 m["rest"], count=1)
        return f"Last refresh: {formatting.timestamp(at)} ({formatting.age(at, now)}){rows}"

    return _COMMENT_REFRESH.sub(refresh_line, comment or "")


def search_and_sort(tables: list[InventoryTable], search: str = "", sort: str = "name",
                    descending: bool = False) -> list[InventoryTable]:
    """Tables whose name, query or provider contains `search` (case-insensitive), sorted by `sort`."""
    if sort not in SORT_KEYS:
        raise UserFacingError(f"Cannot sort by {sort!r}; choose one of {', '.join(SORT_KEYS)}.", ErrorKind.VALIDATION)
    needle = search.strip().lower()
    hits = [t for t in tables
            if not needle or needle in t.name.lower() or needle in t.query_name.lower()
            or needle in t.provider.lower()]
    oldest = datetime.min.replace(tzinfo=UTC)
    keys = {
        "name": lambda t: t.name,
        "rows": lambda t: (t.rows.value if t.rows.value is not None else -1, t.name),
        "size": lambda t: (t.size_bytes, t.name),
        "refreshed": lambda t: (t.last_success_at or oldest, t.name),
        "freshness": lambda t: (_FRESHNESS_ORDER.get(t.freshness.state, 99), -(t.freshness.ratio or 0), t.name),
    }
    return sorted(hits, key=keys[sort], reverse=descending)


def resources_per_provider(tables: list[InventoryTable]) -> list[tuple[str, int]]:
    """Resources collected per provider across all tables, largest first.

    A table's resources are the rows its last successful run collected (the ledger's figure, the same
    for every write mode), else its row count. Materialized views are derived data and not counted.
    """
    totals: dict[str, int] = {}
    for t in tables:
        if t.kind != "table":
            continue
        n = t.last_success_rows if t.last_success_rows is not None else max(t.rows.value or 0, 0)
        key = t.provider or "(no saved query)"
        totals[key] = totals.get(key, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def latest_runs(status: str | None = None, limit: int = LEDGER_LIMIT) -> list[LedgerRun]:
    """The newest runs across all schedules, optionally only those with `status`."""
    if status is not None and status not in RUN_STATUSES:
        raise UserFacingError(f"Unknown run status {status!r}; choose one of {', '.join(RUN_STATUSES)}.",
                              ErrorKind.VALIDATION)
    with session_scope() as s:
        rows = inventory_runs.latest(s, status=status, limit=limit)
    return [
        LedgerRun(
            id=int(r.id), target=f"{r.target_schema}.{r.target_table}", query_name=r.query_name or "",
            trigger=r.trigger, status=r.status, started_at=r.started_at, finished_at=r.finished_at,
            rows_written=r.rows_written, duration_s=r.duration_s, error_message=r.error_message or "",
            created_by=r.created_by or "",
        )
        for r in rows
    ]


def rows_per_run(table: str, limit: int = 60) -> list[RunPoint]:
    """Rows each successful run collected into `table`, oldest first (the chart's series)."""
    with session_scope() as s:
        rows = inventory_runs.success_runs(s, table, limit=limit)
    return [RunPoint(int(r.id), r.finished_at or r.started_at, r.rows_written) for r in reversed(rows)]
