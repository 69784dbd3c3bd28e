"""Preview of one inventory table: keyset pages, a column filter, readable JSON cells and a streamed CSV export.

Paging key (the choice, documented): the runner's tables have no primary key, so
1. a primary key or unique btree index over NOT NULL columns is used when the table has one
   (`(k1, k2) > (last) ORDER BY k1, k2`: one index descent per page, stable under updates);
2. otherwise the physical row address `ctid`, read in bounded block windows. That is exact for the
   runner's insert-only writes (append runs, replace runs that rewrite the whole table), and page
   1,000 costs what page 1 costs. ctid is not stable across UPDATE/DELETE (history runs close
   versions with an UPDATE), so every page compares the table's update/delete counter and
   relfilenode with page 1's and warns that rows may repeat or be skipped when they moved.
A hidden `_stackql_row_id bigint GENERATED ALWAYS AS IDENTITY` with a unique index, written by the
runner, would put every table on path 1; nothing here needs to change for that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from stackql_inventory.db import inventory_catalog, inventory_preview
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.inventory_catalog import Column
from stackql_inventory.db.inventory_diff import META_COLUMNS
from stackql_inventory.db.inventory_preview import FILTER_OPS, Filter
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# How long a page waits for a table a run holds exclusively before saying so.
LOCK_WAIT_MS = 2_000
MAX_FILTER_VALUE = 1_000
EXPORT_TTL = timedelta(minutes=10)
EXPORT_ROUTE = "/api/inventory/export"
_EXPORT_CHUNK = 256 * 1024
_EXPORT_QUEUE = 32                   # chunks buffered between the COPY thread and the HTTP response

# The runner's bookkeeping columns (run id, collection time, SCD2 validity); the preview hides them by default.
BOOKKEEPING_COLUMNS = frozenset(META_COLUMNS)

__all__ = ["BOOKKEEPING_COLUMNS", "FILTER_OPS", "Filter", "Page", "PagingPlan", "TableVersion", "describe_filter",
           "fetch_page"]


@dataclass(frozen=True)
class PagingPlan:
    """How pages of a table are ordered and resumed."""

    kind: str                        # "key" | "ctid"
    key: tuple[str, ...] = ()        # key columns (kind "key")
    index_name: str = ""

    def describe(self) -> str:
        if self.kind == "key":
            return f"ordered by {', '.join(self.key)} (unique index {self.index_name})"
        return "physical order (the table has no unique key)"


@dataclass(frozen=True)
class TableVersion:
    """What page 1 saw; later pages compare to notice a rewrite or moved rows."""

    oid: int
    relfilenode: int
    moved: int                       # rows updated or deleted since the server started


@dataclass(frozen=True)
class Page:
    """One page of rows, as text (None = SQL NULL), with the cursor that resumes after it."""

    table: str
    columns: list[Column]
    rows: list[list[str | None]]
    has_next: bool
    next_cursor: tuple | str | None
    plan: PagingPlan
    version: TableVersion
    warning: str
    elapsed_ms: float
    current_only: bool = False       # only the current versions of an SCD2 history table are shown


def is_history(columns: list[Column]) -> bool:
    """The runner's SCD2 layout (so "current versions only" applies)."""
    names = {c.name for c in columns}
    return {"_valid_to", "_is_deleted"} <= names


def _plan(keys: list[inventory_catalog.UniqueKey]) -> PagingPlan:
    for k in keys:
        if k.all_not_null:
            return PagingPlan("key", k.columns, k.index_name)
    return PagingPlan("ctid")


def _check_filter(flt: Filter | None, columns: list[Column]) -> None:
    if flt is None:
        return
    if flt.column not in {c.name for c in columns}:
        raise UserFacingError(f"The table has no column named {flt.column!r}. Pick a column from the list.",
                              ErrorKind.VALIDATION)
    if flt.op not in FILTER_OPS:
        raise UserFacingError(f"Unknown filter {flt.op!r}; choose one of {', '.join(FILTER_OPS)}.",
                              ErrorKind.VALIDATION)
    if len(flt.value) > MAX_FILTER_VALUE:
        raise UserFacingError(f"The filter value is longer than {MAX_FILTER_VALUE:,} characters; shorten it.",
                              ErrorKind.VALIDATION)


@contextlib.contextmanager
def _lock_wait(table: str) -> Iterator[None]:
    """A run holding the table exclusively (rewriting it) becomes a message instead of a hung preview."""
    try:
        yield
    except sa.exc.OperationalError as e:
        if inventory_catalog.is_lock_timeout(e):
            raise UserFacingError(f"A run is rewriting {table} right now; try again in a moment.",
                                  ErrorKind.CONFLICT) from e
        raise


def _not_found(table: str) -> UserFacingError:
    return UserFacingError(f"stackql_inventory.{table} does not exist any more (dropped or renamed). "
                           "Reload the list.", ErrorKind.NOT_FOUND)


def fetch_page(table: str, *, after: tuple | str | None = None, flt: Filter | None = None,
               page_size: int = PAGE_SIZE, since: TableVersion | None = None, current_only: bool = False) -> Page:
    """The page of `table` that starts after cursor `after` (None: the first page).

    Pass the `version` of the first page as `since` on later pages; the page's `warning` then says
    when a run rewrote the table or moved rows in between. `current_only` keeps the current versions of
    an SCD2 history table (no closed versions, no tombstones); other tables ignore it.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise UserFacingError(f"Page size must be between 1 and {MAX_PAGE_SIZE}.", ErrorKind.VALIDATION)
    started = time.perf_counter()
    with session_scope() as s, _lock_wait(table):
        inventory_catalog.set_lock_timeout(s, LOCK_WAIT_MS)
        rel = inventory_catalog.relation(s, table)
        if rel is None:
            raise _not_found(table)
        if not rel.populated:
            raise UserFacingError(f"The materialized view {table} has not been populated yet; refresh it first.",
                                  ErrorKind.VALIDATION)
        cols = inventory_catalog.columns(s, rel.oid)
        _check_filter(flt, cols)
        current_only = current_only and is_history(cols)
        plan = _plan(inventory_catalog.unique_keys(s, rel.oid))
        ver = inventory_catalog.version(s, table)
        version = TableVersion(int(ver.oid), int(ver.relfilenode), int(ver.moved))
        names = [c.name for c in cols]
        if plan.kind == "key":
            if after is not None and (not isinstance(after, tuple) or len(after) != len(plan.key)):
                after = None  # the table's key changed since the last page: start over
            raw = inventory_preview.page_by_key(s, table, names, plan.key, after, flt, page_size + 1,
                                                current_only=current_only)
            n_key = len(plan.key)
            rows = [list(r[:-n_key]) for r in raw]
            cursors: list[tuple | str] = [tuple(r[-n_key:]) for r in raw]
        else:
            start = after if isinstance(after, str) else "(0,0)"
            density = rel.reltuples / rel.relpages if rel.relpages > 0 and rel.reltuples > 0 else 0.0
            raw = inventory_preview.page_by_ctid(s, table, names, start, flt, page_size + 1, density,
                                                 inventory_catalog.block_size(s), current_only=current_only)
            rows = [list(r[:-1]) for r in raw]
            cursors = [r[-1] for r in raw]
    has_next = len(rows) > page_size
    rows, cursors = rows[:page_size], cursors[:page_size]
    return Page(
        table=table, columns=cols, rows=rows, has_next=has_next, current_only=current_only,
        next_cursor=cursors[-1] if has_next else None, plan=plan, version=version,
        warning=_warning(since, version, plan), elapsed_ms=(time.perf_counter() - started) * 1000,
    )


def _warning(since: TableVersion | None, now: TableVersion, plan: PagingPlan) -> str:
    if since is None:
        return ""
    if (since.oid, since.relfilenode) != (now.oid, now.relfilenode):
        return "A run rewrote this table since the first page; these rows come from the new data."
    if plan.kind == "ctid" and now.moved != since.moved:
        return ("Rows of this table were updated or deleted since the first page. Without a unique key the "
                "preview pages in physical order, so rows may repeat or be skipped: go back to the first page.")
    return ""


def describe_filter(flt: Filter | None) -> str:
    if flt is None:
        return ""
    labels = {"contains": "contains", "equals": "=", "is_null": "is NULL", "not_null": "is not NULL"}
    value = f" {flt.value!r}" if flt.op in ("contains", "equals") else ""
    return f"{flt.column} {labels[flt.op]}{value}"


def pretty_json(value: str | None, column_type: str = "") -> str | None:
    """`value` indented when it is a JSON object or array (json/jsonb columns, or JSON kept as text); else None."""
    if value is None:
        return None
    text = value.strip()
    if not (column_type in ("json", "jsonb") or (text[:1] in "{[" and text[-1:] in "}]")):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, dict | list):
        return None
    return json.dumps(parsed, indent=2, ensure_ascii=False)


# ------------------------------------------------------------------ CSV export


@dataclass(frozen=True)
class ExportTicket:
    """A short-lived, unguessable link to one table's CSV (the filter is fixed when the ticket is made)."""

    token: str
    table: str
    columns: tuple[str, ...]
    flt: Filter | None
    filename: str
    expires_at: datetime
    current_only: bool = False

    @property
    def url(self) -> str:
        return f"{EXPORT_ROUTE}/{self.token}"


_tickets: dict[str, ExportTicket] = {}
_tickets_lock = threading.Lock()


def prepare_export(table: str, flt: Filter | None = None, *, current_only: bool = False,
                   now: datetime | None = None) -> ExportTicket:
    """Check the table and filter now, and return a ticket the export route streams within EXPORT_TTL."""
    now = now or datetime.now(UTC)
    with session_scope() as s:
        rel = inventory_catalog.relation(s, table)
        if rel is None:
            raise _not_found(table)
        cols = inventory_catalog.columns(s, rel.oid)
    _check_filter(flt, cols)
    ticket = ExportTicket(
        token=secrets.token_urlsafe(24), table=table, columns=tuple(c.name for c in cols), flt=flt,
        filename=f"{table}-{now.strftime('%Y%m%d-%H%M%S')}.csv", expires_at=now + EXPORT_TTL,
        current_only=current_only and is_history(cols),
    )
    with _tickets_lock:
        for token in [t for t, v in _tickets.items() if v.expires_at <= now]:
            del _tickets[token]
        _tickets[ticket.token] = ticket
    return ticket


def redeem_export(token: str, *, now: datetime | None = None) -> ExportTicket:
    """The ticket for `token`, or NOT_FOUND when it is unknown or expired."""
    now = now or datetime.now(UTC)
    with _tickets_lock:
        ticket = _tickets.get(token)
    if ticket is None or ticket.expires_at <= now:
        raise UserFacingError("This export link has expired. Export again from the inventory page.",
                              ErrorKind.NOT_FOUND)
    return ticket


class _Aborted(Exception):
    """The reader went away; stop the COPY."""


class _QueueWriter:
    """A file object for COPY TO STDOUT that hands 256 KiB chunks to the reading thread (with back-pressure)."""

    def __init__(self, q: queue.Queue, stop: threading.Event):
        self._q, self._stop, self._buf = q, stop, bytearray()

    def write(self, data: bytes | str) -> int:
        self._buf += data.encode() if isinstance(data, str) else data
        if len(self._buf) >= _EXPORT_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._buf:
            return
        chunk, self._buf = bytes(self._buf), bytearray()
        while True:
            if self._stop.is_set():
                raise _Aborted
            try:
                self._q.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue


_DONE = object()


def stream_csv(ticket: ExportTicket) -> Iterator[bytes]:
    """The ticket's rows as CSV chunks, produced by COPY in a worker thread: memory stays at a few MiB.

    Closing the iterator early (the browser cancelled the download) stops the COPY.
    """
    q: queue.Queue = queue.Queue(maxsize=_EXPORT_QUEUE)
    stop = threading.Event()

    def work() -> None:
        writer = _QueueWriter(q, stop)
        try:
            with session_scope() as s:
                conn = s.connection()
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                try:
                    inventory_preview.copy_csv(s, ticket.table, list(ticket.columns), ticket.flt, writer,
                                               current_only=ticket.current_only)
                except _Aborted:
                    conn.invalidate()  # the COPY is half-read: this connection must not go back to the pool
                    raise
            writer.flush()
            q.put(_DONE)
        except _Aborted:
            log.info("inventory export cancelled by the client table=%s", ticket.table)
        except Exception as e:  # reported to the reader, which ends the response
            log.warning("inventory export failed table=%s error=%s", ticket.table, type(e).__name__)
            q.put(e)

    worker = threading.Thread(target=work, name=f"export-{ticket.table}", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise UserFacingError(f"The export of {ticket.table} stopped early; export again.",
                                      ErrorKind.DATABASE) from item
            yield item
    finally:
        stop.set()
        worker.join(timeout=10)
