"""Materialized views over inventory tables: list, create from a validated SELECT, refresh, add a unique index.

Creation is checked three times: the SELECT's parse tree (`inventory_sql_guard`), a read-only
transaction that plans it (`EXPLAIN`, so unknown columns fail before anything is written), and, in
the creating transaction, the stored rule itself: every relation it reads must be a stackql_inventory
table or materialized view, every function it calls must be on the allow-list, every cast/operator
function built in, and it may depend on no non-built-in object outside stackql_inventory. Only then is
it populated and committed; any failure rolls everything back. All of it runs with
`search_path = pg_catalog, pg_temp` and a statement timeout.

Refreshes (and a view's first population) are recorded in the run ledger as one-off runs with
backend `postgres`, so the list shows when a view was last refreshed and by whom.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from stackql_inventory import formatting
from stackql_inventory.db import inventory_catalog, inventory_matviews, inventory_runs
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity, require_editor
from stackql_inventory.services.inventory import EXACT_COUNT_MAX, RowCount, estimate_rows
from stackql_inventory.services.inventory_sql_guard import ALLOWED_FUNCTIONS, check_view_name, validate_select

log = logging.getLogger(__name__)

CREATE_TIMEOUT_S = 600
REFRESH_TIMEOUT_S = 900
PROBE_TIMEOUT_S = 10
# How long the list waits for a view or table that a run or refresh holds before listing without definitions.
LIST_LOCK_WAIT_MS = 300
_HELD = "(the definition cannot be read while a run or refresh holds a table it uses; reload in a moment)"


@dataclass(frozen=True)
class Matview:
    """A materialized view of `stackql_inventory`."""

    name: str
    definition: str
    populated: bool
    rows: RowCount
    size_bytes: int
    comment: str
    unique_columns: str            # columns of a unique index usable by REFRESH … CONCURRENTLY ('' when none)
    columns: list[str]
    last_refresh_at: datetime | None
    last_refresh_s: float | None
    last_refresh_by: str

    @property
    def can_refresh_concurrently(self) -> bool:
        return self.populated and bool(self.unique_columns)


@dataclass(frozen=True)
class RefreshResult:
    name: str
    concurrently: bool
    duration_s: float
    rows: int | None


def _pg_message(e: sa.exc.DBAPIError) -> str:
    orig = getattr(e, "orig", None)
    text = (getattr(orig, "pgerror", None) or str(orig or e)).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first.removeprefix("ERROR:").strip()


def _is_timeout(e: sa.exc.DBAPIError) -> bool:
    return getattr(getattr(e, "orig", None), "pgcode", "") == "57014"


@contextlib.contextmanager
def _pg_errors(timeout_message: str, failure: str, unique_message: str = "") -> Iterator[None]:
    """Turn PostgreSQL's refusals into user-facing errors *inside* a session (whose scope would otherwise
    report every OperationalError, statement timeouts included, as an unreachable database)."""
    try:
        yield
    except sa.exc.OperationalError as e:
        if _is_timeout(e):
            raise UserFacingError(timeout_message, ErrorKind.TIMEOUT) from e
        if inventory_catalog.is_lock_timeout(e):
            raise UserFacingError("A run is rewriting a table this needs right now; try again in a moment.",
                                  ErrorKind.CONFLICT) from e
        raise
    except sa.exc.IntegrityError as e:
        if unique_message:
            raise UserFacingError(unique_message, ErrorKind.VALIDATION) from e
        raise UserFacingError(f"{failure}: {_pg_message(e)}.", ErrorKind.VALIDATION) from e
    except sa.exc.DBAPIError as e:
        raise UserFacingError(f"{failure}: {_pg_message(e)}.", ErrorKind.VALIDATION) from e


def list_matviews() -> list[Matview]:
    """Every materialized view of stackql_inventory with its definition and refresh facts."""
    held = False
    with session_scope() as s:
        bsize = inventory_catalog.block_size(s)
        try:
            with s.begin_nested():
                inventory_catalog.set_lock_timeout(s, LIST_LOCK_WAIT_MS)
                rows = inventory_matviews.list_views(s, block_size=bsize)
        except sa.exc.OperationalError as e:
            if not inventory_catalog.is_lock_timeout(e):
                raise
            held = True  # a run or refresh holds a table: list without definitions this time
            rows = inventory_matviews.list_views(s, details=False, block_size=bsize)
        estimates = {r.name: estimate_rows(r.reltuples, r.relpages, r.heap_bytes, bsize) for r in rows}
        small = [r.name for r in rows if r.populated and (estimates[r.name] is None
                                                           or estimates[r.name] <= EXACT_COUNT_MAX)]
        counts: dict[str, int] = {}
        if not held:
            try:
                with s.begin_nested():
                    counts = inventory_catalog.capped_counts(s, small, EXACT_COUNT_MAX,
                                                             lock_timeout_ms=LIST_LOCK_WAIT_MS)
            except sa.exc.OperationalError as e:
                if not inventory_catalog.is_lock_timeout(e):
                    raise  # else a refresh holds one exclusively: estimates this time
    out = []
    for r in rows:
        est, counted = estimates[r.name], counts.get(r.name)
        if not r.populated:
            count = RowCount(None)
        elif counted is not None and counted <= EXACT_COUNT_MAX:
            count = RowCount(counted, exact=True)
        elif est is not None and (counted is None or est > EXACT_COUNT_MAX):
            count = RowCount(est)
        else:
            count = RowCount(EXACT_COUNT_MAX, lower_bound=True)
        out.append(Matview(
            name=r.name, definition=(r.definition or "").strip() if not held else _HELD, populated=bool(r.populated), rows=count,
            size_bytes=int(r.size_bytes or 0), comment=r.comment or "", unique_columns=r.unique_columns or "",
            columns=(r.columns or "").split(",") if r.columns else [], last_refresh_at=r.last_refresh_at,
            last_refresh_s=r.last_refresh_s, last_refresh_by=r.last_refresh_by or "",
        ))
    return out


def _verify_rule(refs: dict[str, list]) -> None:
    """Refuse a stored definition that reads or calls anything outside what the guard allows."""
    if refs["unparsed"] or refs["missing_relations"] or refs["missing_calls"]:
        raise UserFacingError("The view's definition could not be verified against the catalog, so it was not "
                              "created. Simplify the SELECT.", ErrorKind.VALIDATION)
    for _oid, name, schema, kind in refs["relations"]:
        if schema != "stackql_inventory" or kind not in ("r", "p", "m"):
            raise UserFacingError(f"The view would read {schema}.{name}; only stackql_inventory tables and "
                                  "materialized views are allowed.", ErrorKind.VALIDATION)
    for oid, name, schema in refs["calls"]:
        if schema != "pg_catalog" or oid >= inventory_matviews.FIRST_NORMAL_OID or name not in ALLOWED_FUNCTIONS:
            raise UserFacingError(f"The view would call {schema}.{name}(), which is not allowed.",
                                  ErrorKind.VALIDATION)
    for oid in refs["internal"]:
        if oid >= inventory_matviews.FIRST_NORMAL_OID:
            raise UserFacingError("The view would use a cast or operator that is not built in.", ErrorKind.VALIDATION)
    for catalog, description, schema in refs["depends"]:
        if catalog != "pg_class" or schema != "stackql_inventory":
            raise UserFacingError(f"The view would depend on {description}; only stackql_inventory objects and "
                                  "built-in functions are allowed.", ErrorKind.VALIDATION)


def _count(s: object, name: str) -> int | None:
    counts = inventory_catalog.capped_counts(s, [name], EXACT_COUNT_MAX)
    n = counts.get(name)
    if n is not None and n <= EXACT_COUNT_MAX:
        return n
    rel = inventory_catalog.relation(s, name)
    return estimate_rows(rel.reltuples, rel.relpages, rel.heap_bytes, inventory_catalog.block_size(s))


def create_matview(name: str, select_sql: str, actor: Identity) -> Matview:
    """Create and populate `stackql_inventory.<name>` from a read-only SELECT over inventory objects.

    Raises VALIDATION (with the reason) for anything but such a SELECT, CONFLICT when the name is taken,
    PERMISSION for read-only users, TIMEOUT when populating takes longer than CREATE_TIMEOUT_S.
    """
    require_editor(actor, "create materialized views")
    name = check_view_name(name)
    checked = validate_select(select_sql)
    with session_scope() as s:
        kinds = inventory_matviews.relkinds(s, [name, *checked.relations])
    if name in kinds:
        raise UserFacingError(f"stackql_inventory.{name} already exists; choose another name.", ErrorKind.CONFLICT)
    for rel in checked.relations:
        if kinds.get(rel) not in ("r", "p", "m"):
            what = "is a view" if kinds.get(rel) == "v" else "does not exist"
            raise UserFacingError(f"stackql_inventory.{rel} {what}; build the view from inventory tables or "
                                  "materialized views.", ErrorKind.VALIDATION)
    # 1. Plan it in a read-only transaction: PostgreSQL names unknown columns, bad types, … here.
    with session_scope() as s, _pg_errors("Planning the SELECT took too long; simplify it.",
                                          "PostgreSQL rejected the SELECT"):
        s.connection().exec_driver_sql("SET TRANSACTION READ ONLY")
        inventory_matviews.set_guards(s, PROBE_TIMEOUT_S)
        inventory_matviews.explain(s, checked.canonical_sql)
        s.rollback()
    # 2. Create it empty, verify what the stored rule uses, then populate — one transaction.
    started = time.perf_counter()
    with session_scope() as s, _pg_errors(
            f"Populating {name} took longer than {CREATE_TIMEOUT_S // 60} minutes and was stopped; nothing was created.",
            f"PostgreSQL could not create {name} (nothing was created)"):
        inventory_matviews.set_guards(s, CREATE_TIMEOUT_S)
        oid = inventory_matviews.create_empty(s, name, checked.canonical_sql)
        _verify_rule(inventory_matviews.rule_references(s, oid))
        inventory_matviews.populate(s, name)
        inventory_matviews.analyze(s, name)
        rows = _count(s, name)
        inventory_matviews.comment(s, name, (
            f"Materialized view over stackql_inventory, created by {actor.user} in the inventory browser on "
            f"{formatting.timestamp(datetime.now(UTC))}. Refresh it from the inventory page."))
        inventory_runs.record_refresh(s, name, actor.user, duration_s=time.perf_counter() - started, rows=rows)
    log.info("matview created name=%s by=%s relations=%s", name, actor.user, ",".join(checked.relations))
    return next(m for m in list_matviews() if m.name == name)


def _get(name: str) -> Matview:
    for m in list_matviews():
        if m.name == name:
            return m
    raise UserFacingError(f"stackql_inventory.{name} is not a materialized view (or no longer exists).",
                          ErrorKind.NOT_FOUND)


def refresh_matview(name: str, actor: Identity) -> RefreshResult:
    """REFRESH the view — CONCURRENTLY (readers keep the old rows meanwhile) when it has a unique index.

    Recorded in the run ledger; a second refresh of the same view while one runs is refused (CONFLICT).
    """
    require_editor(actor, "refresh materialized views")
    view = _get(name)
    concurrently = view.can_refresh_concurrently
    started = time.perf_counter()
    run_id: int | None = None
    try:
        with session_scope() as s, _pg_errors(
                f"Refreshing {name} took longer than {REFRESH_TIMEOUT_S // 60} minutes and was stopped; the view "
                "keeps its previous rows.", f"PostgreSQL could not refresh {name} (it keeps its previous rows)"):
            if not inventory_matviews.try_lock(s, name):
                raise UserFacingError(f"{name} is being refreshed already; wait for that refresh to finish.",
                                      ErrorKind.CONFLICT)
            with session_scope() as ledger:  # committed now, so others see the refresh running
                run_id = inventory_runs.start_refresh(ledger, name, actor.user)
            inventory_matviews.set_guards(s, REFRESH_TIMEOUT_S)
            inventory_matviews.populate(s, name, concurrently=concurrently)
            inventory_matviews.analyze(s, name)
            rows = _count(s, name)
    except UserFacingError as e:
        if run_id is not None:
            with session_scope() as ledger:
                inventory_runs.finish_refresh(ledger, run_id, ok=False, duration_s=time.perf_counter() - started,
                                              rows=None, error_class=e.kind.value, error_message=e.message)
        raise
    duration = time.perf_counter() - started
    with session_scope() as ledger:
        inventory_runs.finish_refresh(ledger, run_id, ok=True, duration_s=duration, rows=rows)
    log.info("matview refreshed name=%s concurrently=%s duration_s=%.3f", name, concurrently, duration)
    return RefreshResult(name, concurrently, duration, rows)


def create_unique_index(name: str, columns: list[str], actor: Identity) -> Matview:
    """Add a unique index on `columns`, which lets the view refresh CONCURRENTLY."""
    require_editor(actor, "change materialized views")
    view = _get(name)
    cols = [c.strip() for c in columns if c.strip()]
    if not cols:
        raise UserFacingError("Pick the column(s) that identify one row of the view.", ErrorKind.VALIDATION)
    unknown = [c for c in cols if c not in view.columns]
    if unknown:
        raise UserFacingError(f"{name} has no column {', '.join(unknown)}; its columns are "
                              f"{', '.join(view.columns)}.", ErrorKind.VALIDATION)
    if len(set(cols)) != len(cols):
        raise UserFacingError("Name each column once.", ErrorKind.VALIDATION)
    index_name = f"{name[:55]}_key"
    with session_scope() as s, _pg_errors(
            "Building the index took too long and was stopped.", "PostgreSQL could not add the index",
            unique_message=(f"Some rows of {name} share the same ({', '.join(cols)}), so it cannot be a unique key. "
                            "Add columns until each row is unique.")):
        suffix = 1
        while inventory_matviews.index_exists(s, index_name):
            suffix += 1
            index_name = f"{name[:52]}_key{suffix}"
        inventory_matviews.set_guards(s, CREATE_TIMEOUT_S)
        inventory_matviews.create_unique_index(s, name, index_name, cols)
    return _get(name)
