"""Run ledger: one `stackql_app.runs` row per runner execution, and each schedule's last-run summary."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from stackql_inventory.db import runs as db_runs
from stackql_inventory.db import schedules as db_schedules
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import RUN_TRIGGERS, Run
from stackql_inventory.services import identity
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

FINAL_STATUSES = ("success", "failed", "skipped", "cancelled")
# Statuses that count as "the schedule ran" (skipped runs did not run: the summary keeps the last real one).
_SUMMARY_STATUSES = ("success", "failed", "cancelled")
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class RunView:
    """One run as the ledger holds it."""

    id: int
    schedule_id: int | None
    query_id: int | None
    target_schema: str
    target_table: str
    write_mode: str
    trigger: str
    backend: str
    backend_run_id: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    rows_written: int | None
    duration_s: float | None
    error_class: str | None
    error_message: str | None   # secrets redacted
    created_by: str
    runner_host: str | None
    runner_pid: int | None

    @property
    def target(self) -> str:
        return f"{self.target_schema}.{self.target_table}"

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


def _view(run: Run) -> RunView:
    return RunView(
        id=int(run.id or 0), schedule_id=run.schedule_id, query_id=run.query_id, target_schema=run.target_schema,
        target_table=run.target_table, write_mode=run.write_mode, trigger=run.trigger, backend=run.backend,
        backend_run_id=run.backend_run_id, status=run.status, started_at=run.started_at,
        finished_at=run.finished_at, rows_written=run.rows_written, duration_s=run.duration_s,
        error_class=run.error_class, error_message=run.error_message, created_by=run.created_by,
        runner_host=run.runner_host, runner_pid=run.runner_pid)


def _check_trigger(trigger: str) -> None:
    if trigger not in RUN_TRIGGERS:
        raise UserFacingError(f"Unknown run trigger {trigger!r}: use one of {', '.join(RUN_TRIGGERS)}.",
                              ErrorKind.VALIDATION)


def open_run(*, target_schema: str, target_table: str, write_mode: str, trigger: str, schedule_id: int | None,
             query_id: int | None, backend: str = "local", backend_run_id: str | None = None,
             created_by: str = "") -> RunView:
    """Open a run row in status `running` (started now, on this host and process)."""
    _check_trigger(trigger)
    with session_scope() as s:
        run = db_runs.insert(s, Run(
            schedule_id=schedule_id, query_id=query_id, target_schema=target_schema, target_table=target_table,
            write_mode=write_mode, trigger=trigger, backend=backend, backend_run_id=backend_run_id,
            status="running", created_by=created_by, runner_host=socket.gethostname(), runner_pid=os.getpid()))
        return _view(run)


def queue_run(schedule_id: int, *, trigger: str, actor: identity.Identity | None = None, backend: str = "local",
              backend_run_id: str | None = None) -> RunView:
    """Create a `queued` run for a schedule (the scheduler starts `python -m runner --run-id N` for it).

    A manual run ("Run now") is made on behalf of `actor`, who must be an editor.
    """
    _check_trigger(trigger)
    if trigger == "manual":
        if actor is None:
            raise UserFacingError("A manual run needs the user who asked for it.", ErrorKind.VALIDATION)
        identity.require_editor(actor, "run a schedule now")
    with session_scope() as s:
        schedule = db_schedules.get(s, schedule_id)
        if schedule is None:
            raise UserFacingError(f"Schedule {schedule_id} does not exist (it may have been deleted).",
                                  ErrorKind.NOT_FOUND)
        run = db_runs.insert(s, Run(
            schedule_id=schedule_id, query_id=schedule.query_id, target_schema=schedule.target_schema,
            target_table=schedule.target_table, write_mode=schedule.write_mode, trigger=trigger, backend=backend,
            backend_run_id=backend_run_id, status="queued",
            created_by=actor.user if actor is not None else "scheduler"))
        return _view(run)


def claim_run(run_id: int, *, schedule_id: int | None, query_id: int | None, target_schema: str, target_table: str,
              write_mode: str, backend_run_id: str | None = None) -> RunView:
    """Take over a queued run (status → running, started now, this host/pid); CONFLICT unless it is queued."""
    values: dict = {"query_id": query_id, "target_schema": target_schema, "target_table": target_table,
                    "write_mode": write_mode}
    if backend_run_id is not None:
        values["backend_run_id"] = backend_run_id
    with session_scope() as s:
        existing = db_runs.get(s, run_id)
        if existing is None:
            raise UserFacingError(f"Run {run_id} does not exist: it cannot be taken over.", ErrorKind.NOT_FOUND)
        if existing.schedule_id != schedule_id:
            raise UserFacingError(
                f"Run {run_id} belongs to schedule {existing.schedule_id}, not {schedule_id}.", ErrorKind.VALIDATION)
        run = db_runs.claim_queued(s, run_id, runner_host=socket.gethostname(), runner_pid=os.getpid(),
                                   values=values)
        if run is None:
            raise UserFacingError(
                f"Run {run_id} is {existing.status}, not queued: another runner took it, or it was cancelled.",
                ErrorKind.CONFLICT)
        return _view(run)


def mark_written(run_id: int, rows_written: int) -> None:
    """Record that the run's write committed (rows_written set): later runs order themselves after it."""
    with session_scope() as s:
        db_runs.mark_written(s, run_id, rows_written)


def finish_run(run_id: int, *, status: str, rows_written: int | None = None, error_class: str | None = None,
               error_message: str | None = None, secrets: Iterable[str | None] = ()) -> RunView:
    """Close a run; the error text is redacted with `secrets` (every credential value of the run) first.

    Also updates the schedule's last_run_at (the run's start) / last_run_status / consecutive_failures,
    except for skipped runs.
    """
    if status not in FINAL_STATUSES:
        raise UserFacingError(f"{status!r} is not a final run status.", ErrorKind.VALIDATION)
    message = redact(error_message, list(secrets)) if error_message else error_message
    if message and len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "…"
    with session_scope() as s:
        run = db_runs.finish(s, run_id, status=status, rows_written=rows_written, error_class=error_class,
                             error_message=message)
        if run is None:
            raise UserFacingError(f"Run {run_id} does not exist.", ErrorKind.NOT_FOUND)
        if run.schedule_id is not None and status in _SUMMARY_STATUSES and run.started_at is not None:
            db_runs.record_schedule_outcome(s, run.schedule_id, status=status, run_started_at=run.started_at)
        return _view(run)


def get_run(run_id: int) -> RunView | None:
    """One run, or None."""
    with session_scope() as s:
        run = db_runs.get(s, run_id)
        return _view(run) if run is not None else None


def list_runs(schedule_id: int | None = None, *, limit: int = 50) -> list[RunView]:
    """Recent runs (newest first), of one schedule or all."""
    with session_scope() as s:
        return [_view(r) for r in db_runs.list_recent(s, schedule_id=schedule_id, limit=limit)]


def newer_write(target_schema: str, target_table: str, run_id: int) -> RunView | None:
    """A higher-numbered run that already wrote this target (its write committed), if any."""
    with session_scope() as s:
        run = db_runs.newer_write(s, target_schema, target_table, run_id)
        return _view(run) if run is not None else None


def running_on(target_schema: str, target_table: str, exclude_id: int) -> list[RunView]:
    """Other runs in status running on this target."""
    with session_scope() as s:
        return [_view(r) for r in db_runs.running_on_target(s, target_schema, target_table, exclude_id)]
