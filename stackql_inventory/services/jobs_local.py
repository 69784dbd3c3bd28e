"""The local jobs backend: schedules run by this app's own scheduler (`services/scheduler.py`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from stackql_inventory.config import Settings
from stackql_inventory.db import runs as db_runs
from stackql_inventory.db import schedules as db
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import Run, Schedule
from stackql_inventory.services import scheduler
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.jobs import JobChange, JobStatus, RunInfo, ledger_run_info


class LocalJobs:
    """No external job: the database row is the job, and the in-process scheduler fires it."""

    name = "local"

    def __init__(self, settings: Settings):
        self.settings = settings

    def create(self, schedule: Schedule, query_name: str) -> str | None:
        return None

    def update(self, schedule: Schedule, query_name: str) -> JobChange:
        return JobChange(job_id=None)

    def set_paused(self, schedule: Schedule, query_name: str) -> None:
        return None

    def delete(self, schedule: Schedule) -> str:
        return ""

    def run_now(self, session: Session, schedule: Schedule, actor: str) -> str:
        """Queue a manual run; the scheduler starts it as soon as a concurrency slot is free."""
        assert schedule.id is not None
        busy = db.in_flight(session, schedule.id)
        if busy is not None:
            raise UserFacingError(
                f"A run of this schedule is already {busy.status}. Wait for it to finish, then run it again.",
                ErrorKind.CONFLICT,
            )
        db_runs.insert(session, Run(
            schedule_id=schedule.id, query_id=schedule.query_id, target_schema=schedule.target_schema,
            target_table=schedule.target_table, write_mode=schedule.write_mode, trigger="manual", backend="local",
            status="queued", started_at=datetime.now(UTC), created_by=actor,
        ))
        if not self.settings.scheduler_enabled:
            return ("Run queued. This app instance does not run the scheduler (STACKQL_INVENTORY_SCHEDULER is "
                    "off), so it starts when another instance picks it up.")
        return "Run queued; it starts within seconds."

    def statuses(self, schedules: list[Schedule]) -> dict[int, JobStatus]:
        # The run ledger already holds every local run: nothing to add.
        return {}

    def runs(self, schedule: Schedule, limit: int) -> list[RunInfo]:
        assert schedule.id is not None
        with session_scope() as s:
            return [ledger_run_info(r) for r in db.runs_for(s, schedule.id, limit=limit)]

    def job_url(self, job_id: str | None) -> str:
        return ""

    def changed(self) -> None:
        scheduler.notify_changed()
