"""SQL for the run ledger (`stackql_app.runs`) and the run summary it keeps on `stackql_app.schedules`."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db.models import Run, Schedule


def insert(session: Session, run: Run) -> Run:
    """Add a run row and return it with its id."""
    session.add(run)
    session.flush()
    session.refresh(run)
    return run


def get(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def claim_queued(session: Session, run_id: int, *, runner_host: str, runner_pid: int, values: dict) -> Run | None:
    """Move a queued run to `running` (atomically: only one runner can take a queued row); None if not queued.

    started_at becomes the database's clock now (the queued row's value was when it was queued).
    """
    stmt = (
        sa.update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == "queued")
        .values(status="running", started_at=sa.func.clock_timestamp(), runner_host=runner_host,
                runner_pid=runner_pid, **values)
        .returning(col(Run.id))
    )
    claimed = session.execute(stmt).scalar_one_or_none()
    if claimed is None:
        return None
    session.expire_all()
    return session.get(Run, run_id)


def mark_written(session: Session, run_id: int, rows_written: int) -> None:
    """Record that the run's write committed (before views are refreshed and the run is closed)."""
    session.execute(sa.update(Run).where(col(Run.id) == run_id).values(rows_written=rows_written))


def finish(session: Session, run_id: int, *, status: str, rows_written: int | None, error_class: str | None,
           error_message: str | None) -> Run | None:
    """Close a run (status, end time and duration on the database's clock, rows, error) and return it."""
    now = sa.func.clock_timestamp()
    values: dict = {"status": status, "finished_at": now,
                    "duration_s": sa.extract("epoch", now - col(Run.started_at)),
                    "error_class": error_class, "error_message": error_message}
    if rows_written is not None:
        values["rows_written"] = rows_written
    session.execute(sa.update(Run).where(col(Run.id) == run_id).values(**values))
    session.expire_all()
    return session.get(Run, run_id)


def newer_write(session: Session, schema: str, table: str, run_id: int) -> Run | None:
    """The lowest-numbered run after `run_id` whose write to this target committed, if any."""
    stmt = (
        select(Run)
        .where(col(Run.target_schema) == schema, col(Run.target_table) == table, col(Run.id) > run_id,
               col(Run.rows_written).is_not(None))
        .order_by(col(Run.id))
        .limit(1)
    )
    return session.exec(stmt).first()


def running_on_target(session: Session, schema: str, table: str, exclude_id: int) -> list[Run]:
    """Other runs marked running on this target (oldest first)."""
    stmt = (
        select(Run)
        .where(col(Run.target_schema) == schema, col(Run.target_table) == table, col(Run.status) == "running",
               col(Run.id) != exclude_id)
        .order_by(col(Run.id))
    )
    return list(session.exec(stmt))


def list_recent(session: Session, *, schedule_id: int | None = None, limit: int = 50) -> list[Run]:
    """Runs, newest first, optionally of one schedule."""
    stmt = select(Run)
    if schedule_id is not None:
        stmt = stmt.where(col(Run.schedule_id) == schedule_id)
    stmt = stmt.order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(limit)
    return list(session.exec(stmt))


def record_schedule_outcome(session: Session, schedule_id: int, *, status: str, run_started_at: datetime) -> None:
    """Update the schedule's run summary: last_run_at/status and the consecutive failure count.

    success resets the failures to 0, failed adds one; cancelled leaves the count alone. A run
    older than the one already recorded does not overwrite it.
    """
    failures = {
        "success": sa.literal(0),
        "failed": col(Schedule.consecutive_failures) + 1,
    }.get(status, col(Schedule.consecutive_failures))
    stmt = (
        sa.update(Schedule)
        .where(col(Schedule.id) == schedule_id,
               sa.or_(col(Schedule.last_run_at).is_(None), col(Schedule.last_run_at) <= run_started_at))
        .values(last_run_at=run_started_at, last_run_status=status, consecutive_failures=failures)
    )
    session.execute(stmt)
