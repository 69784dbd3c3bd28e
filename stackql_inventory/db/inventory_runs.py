"""SQL over the run ledger (`stackql_app.runs`) for the inventory browser, and its materialized-view refresh rows."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from stackql_inventory.db.models import INVENTORY_SCHEMA

_LATEST_SQL = sa.text(
    """
    SELECT r.id, r.schedule_id, r.query_id, q.name AS query_name, r.target_schema, r.target_table,
           r.write_mode, r.trigger, r.backend, r.status, r.started_at, r.finished_at, r.rows_written,
           r.duration_s, r.error_class, r.error_message, r.created_by
    FROM stackql_app.runs r
    LEFT JOIN stackql_app.queries q ON q.id = r.query_id
    WHERE (CAST(:status AS text) IS NULL OR r.status = :status)
    ORDER BY r.started_at DESC, r.id DESC
    LIMIT :limit
    """
)

_STATUS_COUNTS_SQL = sa.text("SELECT status, count(*) AS n FROM stackql_app.runs GROUP BY status")

_SUCCESS_RUNS_SQL = sa.text(
    """
    SELECT r.id, r.started_at, r.finished_at, r.rows_written
    FROM stackql_app.runs r
    WHERE r.target_schema = :schema AND r.target_table = :table AND r.status = 'success'
    ORDER BY r.started_at DESC, r.id DESC
    LIMIT :limit
    """
)

_INSERT_SQL = sa.text(
    """
    INSERT INTO stackql_app.runs (target_schema, target_table, write_mode, trigger, backend, status, created_by)
    VALUES (:schema, :table, 'replace', 'manual', 'postgres', 'running', :created_by)
    RETURNING id
    """
)

_FINISH_SQL = sa.text(
    """
    UPDATE stackql_app.runs
    SET status = :status, finished_at = now(), duration_s = :duration_s, rows_written = :rows,
        error_class = :error_class, error_message = :error_message
    WHERE id = :id
    """
)


def latest(session: Session, *, status: str | None, limit: int) -> list[sa.Row]:
    """The newest runs across all schedules (and one-off runs), optionally of one status."""
    return list(session.execute(_LATEST_SQL, {"status": status, "limit": limit}))


def status_counts(session: Session) -> dict[str, int]:
    return {r.status: int(r.n) for r in session.execute(_STATUS_COUNTS_SQL)}


def success_runs(session: Session, table: str, *, limit: int) -> list[sa.Row]:
    """Successful runs that wrote `stackql_inventory.<table>`, newest first."""
    return list(session.execute(_SUCCESS_RUNS_SQL, {"schema": INVENTORY_SCHEMA, "table": table, "limit": limit}))


def start_refresh(session: Session, view: str, created_by: str) -> int:
    """Record a materialized-view refresh as a running one-off run (backend `postgres`); return its id."""
    return int(session.execute(_INSERT_SQL, {"schema": INVENTORY_SCHEMA, "table": view,
                                             "created_by": created_by}).scalar_one())


def finish_refresh(session: Session, run_id: int, *, ok: bool, duration_s: float, rows: int | None,
                   error_class: str | None = None, error_message: str | None = None) -> None:
    session.execute(_FINISH_SQL, {"id": run_id, "status": "success" if ok else "failed", "duration_s": duration_s,
                                  "rows": rows, "error_class": error_class, "error_message": error_message})


_RECORD_SQL = sa.text(
    """
    INSERT INTO stackql_app.runs (target_schema, target_table, write_mode, trigger, backend, status, started_at,
                                  finished_at, duration_s, rows_written, created_by)
    VALUES (:schema, :table, 'replace', 'manual', 'postgres', 'success', now() - make_interval(secs => :duration_s),
            now(), :duration_s, :rows, :created_by)
    """
)


def record_refresh(session: Session, view: str, created_by: str, *, duration_s: float, rows: int | None) -> None:
    """Record a finished, successful refresh (a view's first population, in the transaction that creates it)."""
    session.execute(_RECORD_SQL, {"schema": INVENTORY_SCHEMA, "table": view, "created_by": created_by,
                                  "duration_s": duration_s, "rows": rows})
