"""SQL for schedules (`stackql_app.schedules`), their run history, and the local scheduler's claims."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db import runs as db_runs
from stackql_inventory.db.models import Run, SavedQuery, Schedule

# Key of the transaction-level advisory lock every local scheduler holds while it claims work, so that
# several app processes on one database count runs in flight and fire each slot exactly once.
SCHEDULER_LOCK_KEY = 0x5343_4845  # "SCHE"
IN_FLIGHT = ("queued", "running")
# Column every table the runner writes carries; tells an inventory table from anything else.
INVENTORY_MARKER_COLUMN = "_stackql_run_id"


# --- schedules -----------------------------------------------------------------------------------


def list_with_queries(session: Session) -> list[tuple[Schedule, SavedQuery]]:
    """Every schedule with its saved query, by target table."""
    stmt = (
        select(Schedule, SavedQuery)
        .join(SavedQuery, col(SavedQuery.id) == Schedule.query_id)
        .order_by(col(Schedule.target_table))
    )
    return [(s, q) for s, q in session.exec(stmt)]


def get(session: Session, schedule_id: int) -> Schedule | None:
    return session.get(Schedule, schedule_id)


def get_for_update(session: Session, schedule_id: int) -> Schedule | None:
    """The schedule, row-locked until the transaction ends (edits, run-now and claims serialise on it)."""
    stmt = select(Schedule).where(Schedule.id == schedule_id).with_for_update()
    return session.exec(stmt).first()


def add(session: Session, schedule: Schedule) -> Schedule:
    """Insert a schedule and return it with its id."""
    session.add(schedule)
    session.flush()
    return schedule


def delete(session: Session, schedule: Schedule) -> None:
    session.delete(schedule)
    session.flush()


def target_owner(session: Session, schema: str, table: str, *, excluding: int | None = None) -> int | None:
    """Id of the schedule writing `schema.table` (other than `excluding`), or None."""
    stmt = select(Schedule.id).where(Schedule.target_schema == schema, Schedule.target_table == table)
    if excluding is not None:
        stmt = stmt.where(Schedule.id != excluding)
    return session.exec(stmt).first()


@dataclass(frozen=True)
class Relation:
    """An object already named `schema.name` in the database."""

    kind: str               # "table", "view", "materialized view", "index", "sequence", …
    is_inventory_table: bool


_RELKINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "i": "index", "I": "index",
             "S": "sequence", "f": "foreign table", "c": "composite type", "t": "TOAST table"}

_RELATION_SQL = sa.text(
    """
    SELECT c.relkind::text AS relkind,
           EXISTS (SELECT 1 FROM pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attname = :marker AND NOT a.attisdropped) AS marked
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND c.relname = :name
    UNION ALL
    SELECT 'type', false FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = :schema AND t.typname = :name AND t.typrelid = 0
    """
)


def relation(session: Session, schema: str, name: str) -> Relation | None:
    """What already holds the name `schema.name` (a table, view, index, type…), or None."""
    row = session.execute(_RELATION_SQL, {"schema": schema, "name": name,
                                          "marker": INVENTORY_MARKER_COLUMN}).first()
    if row is None:
        return None
    kind = _RELKINDS.get(row.relkind, row.relkind)
    return Relation(kind=kind, is_inventory_table=kind == "table" and bool(row.marked))


def drop_table(session: Session, schema: str, table: str) -> bool:
    """Drop `schema.table` if it is a table; True when one was dropped. Identifiers are quoted."""
    found = relation(session, schema, table)
    if found is None or found.kind != "table":
        return False
    quote = session.get_bind().dialect.identifier_preparer.quote
    session.execute(sa.text(f"DROP TABLE {quote(schema)}.{quote(table)}"))
    return True


# --- run history (read side) ---------------------------------------------------------------------


def latest_runs(session: Session) -> dict[int, Run]:
    """The most recent run of every schedule that has one, by schedule id."""
    stmt = (
        select(Run)
        .where(col(Run.schedule_id).is_not(None))
        .distinct(col(Run.schedule_id))
        .order_by(col(Run.schedule_id), col(Run.started_at).desc(), col(Run.id).desc())
    )
    return {r.schedule_id: r for r in session.exec(stmt) if r.schedule_id is not None}


def runs_for(session: Session, schedule_id: int, *, limit: int = 20) -> list[Run]:
    """A schedule's runs, newest first."""
    stmt = (
        select(Run).where(Run.schedule_id == schedule_id)
        .order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(limit)
    )
    return list(session.exec(stmt))


def runs_by_backend_id(session: Session, schedule_id: int, backend_run_ids: Iterable[str]) -> dict[str, Run]:
    """Ledger rows of a schedule keyed by the backend's run id (Databricks run ids)."""
    ids = [str(i) for i in backend_run_ids]
    if not ids:
        return {}
    stmt = select(Run).where(Run.schedule_id == schedule_id, col(Run.backend_run_id).in_(ids))
    return {r.backend_run_id: r for r in session.exec(stmt) if r.backend_run_id}


def in_flight(session: Session, schedule_id: int) -> Run | None:
    """The schedule's queued or running run, if any."""
    stmt = select(Run).where(Run.schedule_id == schedule_id, col(Run.status).in_(IN_FLIGHT)).limit(1)
    return session.exec(stmt).first()


def any_in_flight(session: Session) -> bool:
    """Whether any run at all is queued or running."""
    return session.exec(select(Run.id).where(col(Run.status).in_(IN_FLIGHT)).limit(1)).first() is not None


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


# --- the local scheduler -------------------------------------------------------------------------


def lock_scheduler(session: Session) -> None:
    """Serialise claims across every scheduler on this database until the transaction ends."""
    session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEDULER_LOCK_KEY})


def _local_in_flight_clause() -> sa.ColumnElement[bool]:
    # A queued run only takes a slot once a scheduler has claimed it (runner_pid set).
    return sa.and_(
        Run.backend == "local",
        sa.or_(Run.status == "running", sa.and_(Run.status == "queued", col(Run.runner_pid).is_not(None))),
    )


def count_local_in_flight(session: Session) -> int:
    """Local runs holding a concurrency slot: running, or claimed and about to start."""
    stmt = select(sa.func.count()).select_from(Run).where(_local_in_flight_clause())
    return int(session.exec(stmt).one())


def claim_pending_runs(session: Session, *, limit: int, host: str, pid: int) -> list[Run]:
    """Lock up to `limit` unclaimed queued local runs (run-now requests), oldest first, and claim them."""
    if limit <= 0:
        return []
    stmt = (
        select(Run)
        .where(Run.backend == "local", Run.status == "queued", col(Run.runner_pid).is_(None))
        .order_by(col(Run.id)).limit(limit).with_for_update(skip_locked=True)
    )
    runs = list(session.exec(stmt))
    for run in runs:
        run.runner_host, run.runner_pid = host, pid
    session.flush()
    return runs


def _no_run_in_flight() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(Run.schedule_id == Schedule.id, col(Run.status).in_(IN_FLIGHT))


def _locally_scheduled() -> sa.ColumnElement[bool]:
    # Schedules with a Databricks job are run by Databricks, never by the local scheduler.
    return sa.and_(col(Schedule.is_active), col(Schedule.job_id).is_(None))


def lock_due_schedules(session: Session, now: datetime, *, limit: int) -> list[Schedule]:
    """Lock up to `limit` local schedules due at `now` with no run in flight, most overdue first."""
    if limit <= 0:
        return []
    stmt = (
        select(Schedule)
        .where(_locally_scheduled(), col(Schedule.next_run_at) <= now, _no_run_in_flight())
        .order_by(col(Schedule.next_run_at), col(Schedule.id)).limit(limit)
        .with_for_update(of=Schedule, skip_locked=True)
    )
    return list(session.exec(stmt))


def earliest_due(session: Session) -> datetime | None:
    """When the next local schedule without a run in flight falls due (None: nothing scheduled)."""
    stmt = select(sa.func.min(Schedule.next_run_at)).where(_locally_scheduled(), _no_run_in_flight())
    return session.exec(stmt).one()


def has_pending_runs(session: Session) -> bool:
    """Whether run-now requests wait for a free slot."""
    stmt = select(Run.id).where(Run.backend == "local", Run.status == "queued", col(Run.runner_pid).is_(None))
    return session.exec(stmt.limit(1)).first() is not None


def lock_unplanned_schedules(session: Session) -> list[Schedule]:
    """Active local schedules that have no next run time yet (inserted by other means), locked."""
    stmt = (
        select(Schedule).where(_locally_scheduled(), col(Schedule.next_run_at).is_(None))
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(stmt))


def lock_local_runs_in_flight(session: Session) -> list[Run]:
    """Local runs that are queued-and-claimed or running (for crashed-run recovery), locked."""
    stmt = select(Run).where(_local_in_flight_clause()).order_by(col(Run.id)).with_for_update(skip_locked=True)
    return list(session.exec(stmt))


def set_runner_pid(session: Session, run_id: int, pid: int) -> None:
    """Record the runner child's pid on a run the scheduler claimed (until the runner records its own)."""
    session.execute(
        sa.update(Run).where(Run.id == run_id, Run.status == "queued").values(runner_pid=pid)
    )


def fail_run(session: Session, run: Run, *, error_class: str, message: str, now: datetime) -> None:
    """Mark an unfinished run failed (its runner crashed or vanished) and count the failure on its schedule,
    by the ledger's rule (`db.runs.record_schedule_outcome`)."""
    if run.status == "running" and run.started_at is not None:  # a run that never started took no time
        run.duration_s = max(0.0, (now - run.started_at).total_seconds())
    run.status = "failed"
    run.finished_at = now
    run.error_class = error_class
    run.error_message = message
    session.flush()
    if run.schedule_id is not None:
        db_runs.record_schedule_outcome(session, run.schedule_id, status="failed",
                                        run_started_at=run.started_at or now)
