"""Job backends: what triggers a schedule's runs (the in-process scheduler, or one Databricks Job each).

Both backends share one interface; `backend_for(settings)` picks it from `STACKQL_INVENTORY_JOBS_BACKEND`.
The schedules service owns the database rows and calls the backend inside the same transaction, so a
backend failure rolls the change back and nothing half-done is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session

from stackql_inventory.config import Backend, Settings, get_settings
from stackql_inventory.db.models import Run, Schedule


@dataclass(frozen=True)
class RunInfo:
    """One run of a schedule, as the run history shows it."""

    run_id: str                  # ledger id (local) or Databricks run id
    trigger: str                 # schedule | manual | catchup (or the backend's word)
    status: str                  # queued | running | success | failed | skipped | cancelled
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    rows_written: int | None
    error_class: str
    error_message: str
    url: str                     # the backend's page for this run ('' for local runs)

    @property
    def in_flight(self) -> bool:
        return self.status in ("queued", "running")


@dataclass(frozen=True)
class JobStatus:
    """What the backend says about a schedule's job."""

    problem: str                 # '' when fine, else what is wrong (e.g. the job was deleted outside the app)
    latest: RunInfo | None       # the newest run the backend knows of


@dataclass(frozen=True)
class JobChange:
    """The job id after a change, and anything the user should be told about it."""

    job_id: str | None
    notice: str = ""


class JobsBackend(Protocol):
    """Creates, changes and triggers the jobs behind schedules."""

    name: str

    def create(self, schedule: Schedule, query_name: str) -> str | None:
        """Create the job for a new schedule (its id is set); return the job id, if the backend has one."""

    def update(self, schedule: Schedule, query_name: str) -> JobChange:
        """Make the job match the edited schedule (cron, zone, target, active)."""

    def set_paused(self, schedule: Schedule, query_name: str) -> None:
        """Pause or resume the job to match `schedule.is_active`."""

    def delete(self, schedule: Schedule) -> str:
        """Delete the job; return a notice ('' when nothing unusual happened)."""

    def run_now(self, session: Session, schedule: Schedule, actor: str) -> str:
        """Start a run at once (the schedule row is locked); return what the user is told."""

    def statuses(self, schedules: list[Schedule]) -> dict[int, JobStatus]:
        """Backend-side status per schedule id (empty when the run ledger already says it all)."""

    def runs(self, schedule: Schedule, limit: int) -> list[RunInfo]:
        """The schedule's runs, newest first."""

    def job_url(self, job_id: str | None) -> str:
        """Link to the job in the backend's own UI ('' when there is none)."""

    def changed(self) -> None:
        """Called after a schedule change committed (the local scheduler re-reads its plan)."""


def backend_for(settings: Settings | None = None) -> JobsBackend:
    """The configured backend: `local` (in-process scheduler) or `databricks` (Databricks Jobs)."""
    settings = settings or get_settings()
    if settings.jobs_backend is Backend.DATABRICKS:
        from stackql_inventory.services.jobs_databricks import DatabricksJobs

        return DatabricksJobs(settings)
    from stackql_inventory.services.jobs_local import LocalJobs

    return LocalJobs(settings)


def ledger_run_info(run: Run) -> RunInfo:
    """A run-ledger row (`stackql_app.runs`) as run history shows it."""
    return RunInfo(
        run_id=str(run.id), trigger=run.trigger, status=run.status, started_at=run.started_at,
        finished_at=run.finished_at, duration_s=run.duration_s, rows_written=run.rows_written,
        error_class=run.error_class or "", error_message=run.error_message or "", url="",
    )
