"""The Databricks jobs backend: one Databricks Job per schedule (Quartz cron, serverless task running the runner).

A job carries the schedule id, the trigger and the app's non-secret settings the runner needs to find the
database and the secrets (`job_entry.py --env NAME=VALUE`): never a credential. The runner authenticates as
the job's run-as identity and reads the schedule, the query and the provider secrets itself at run time.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs
from sqlmodel import Session

from stackql_inventory.config import Backend, Settings
from stackql_inventory.db import schedules as db
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import Run, Schedule
from stackql_inventory.services import cron
from stackql_inventory.services.databricks_client import is_not_found, sdk_error_to_user_facing, workspace_client
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.jobs import JobChange, JobStatus, RunInfo, ledger_run_info

log = logging.getLogger(__name__)

APP_TAG = "stackql-inventory"
TASK_KEY = "run"
ENVIRONMENT_KEY = "runner"
# Serverless environment version (Python 3.12); the runner needs nothing newer.
ENVIRONMENT_VERSION = "4"
# Runs listed per request (the Jobs API allows at most 25).
_RUNS_PAGE = 25
# Status look-ups run in parallel, a few at a time.
_STATUS_WORKERS = 8

_QUEUED_STATES = {"QUEUED", "PENDING", "BLOCKED", "WAITING"}
_RUNNING_STATES = {"RUNNING", "TERMINATING"}
_SUCCESS_CODES = {"SUCCESS", "SUCCESS_WITH_FAILURES"}
_CANCELLED_CODES = {"USER_CANCELED", "CANCELED"}
_SKIPPED_CODES = {"SKIPPED", "MAX_CONCURRENT_RUNS_EXCEEDED", "MAX_JOB_QUEUE_SIZE_EXCEEDED", "DISABLED"}
_TRIGGERS = {"PERIODIC": "schedule", "ONE_TIME": "manual", "RETRY": "retry"}
_VERSION_START = re.compile(r"^\s*(?:[<>=!~]=?|===)")
# Seconds a job's status (its `jobs/get` + `runs/list` answers) is reused. The Schedules page lists every
# schedule and re-lists every 1.5 s while a run is going, in every open tab: without this, 100 job-backed
# schedules mean ~240 Jobs API calls a second and the workspace's rate limit (benchmarks/job_status_calls.py).
# A job whose newest run is queued or running is asked again after STATUS_TTL_S; an idle one (its run
# finished, or none yet) only changes when a run starts, so after IDLE_STATUS_TTL_S. Actions on a schedule
# (run now, pause, edit, delete) forget its job's entry, so what the user just did shows at once.
STATUS_TTL_S = 5.0
IDLE_STATUS_TTL_S = 60.0
_ACTIVE = {"queued", "running"}


class _JobCache:
    """Answers of the Jobs API per (workspace host, job id, what), each kept for a TTL; thread-safe."""

    _MAX_ENTRIES = 5000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[float, Any]] = {}

    def get(self, key: tuple[str, str, str], ttl_s: Callable[[Any], float], load: Callable[[], Any]) -> Any:
        """The cached answer for `key` if younger than `ttl_s(answer)`, else `load()` (cached in turn)."""
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < ttl_s(hit[1]):
            return hit[1]
        value = load()
        with self._lock:
            if len(self._entries) >= self._MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < ttl_s(v[1])}
            self._entries[key] = (time.monotonic(), value)
        return value

    def forget(self, host: str, job_id: str | None) -> None:
        """Drop every answer about `job_id` (after the app changed the job or started a run)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == host and k[1] == str(job_id)]:
                del self._entries[key]


_cache = _JobCache()


def runner_dependencies(text: str) -> list[str]:
    """`STACKQL_INVENTORY_RUNNER_DEPENDENCIES` as pip lines: split on commas and new lines, except commas
    inside a version range (`psycopg[binary]>=3.2,<4` stays one requirement)."""
    deps: list[str] = []
    for piece in re.split(r"[,\n]", text or ""):
        if not piece.strip():
            continue
        if deps and _VERSION_START.match(piece):
            deps[-1] = f"{deps[-1]},{piece.strip()}"
        else:
            deps.append(piece.strip())
    return deps


def runner_settings(settings: Settings) -> list[str]:
    """The `--env NAME=VALUE` arguments (for infra/runner/job_entry.py) that point a job's runner at this app's
    Lakebase database and Databricks secret scope. Serverless tasks have no environment of their own, and a
    runner without these would fall back to an embedded database and local secret files.

    Refuses (CONFIG) an app whose database or secrets a job cannot reach without a password in its definition.
    """
    if not settings.uses_lakebase:
        where = ("DATABASE_URL (a password a job definition must not carry)" if settings.database_url is not None
                 else "the embedded PostgreSQL on this machine")
        raise UserFacingError(
            f"Databricks jobs cannot reach this app's database: it uses {where}. Give the app a Lakebase database "
            "resource (PGHOST, or LAKEBASE_ENDPOINT / LAKEBASE_INSTANCE), or set STACKQL_INVENTORY_JOBS_BACKEND=local "
            "to run schedules in the app itself.", ErrorKind.CONFIG)
    if settings.secrets_backend is not Backend.DATABRICKS:
        raise UserFacingError(
            "Databricks jobs cannot read this app's local secret files. Set STACKQL_INVENTORY_SECRETS_BACKEND="
            "databricks (a secret scope the app and its jobs can read), or STACKQL_INVENTORY_JOBS_BACKEND=local.",
            ErrorKind.CONFIG)
    pairs = {
        "PGHOST": settings.pghost,
        "PGPORT": str(settings.pgport),
        "PGDATABASE": settings.pgdatabase,
        "PGUSER": settings.pguser,
        "PGSSLMODE": settings.pgsslmode,
        "LAKEBASE_ENDPOINT": settings.lakebase_endpoint,
        "LAKEBASE_INSTANCE": settings.lakebase_instance,
        "STACKQL_INVENTORY_SECRETS_BACKEND": Backend.DATABRICKS.value,
        "STACKQL_INVENTORY_SECRET_SCOPE": settings.secret_scope,
        "STACKQL_INVENTORY_JOBS_BACKEND": Backend.DATABRICKS.value,
        "STACKQL_INVENTORY_QUERY_TIMEOUT": f"{settings.query_timeout_s:g}",
        "STACKQL_INVENTORY_LOG_LEVEL": settings.log_level,
    }
    return [arg for name, value in pairs.items() if value for arg in ("--env", f"{name}={value}")]


def job_name(schedule: Schedule) -> str:
    return f"{APP_TAG}: {schedule.target_schema}.{schedule.target_table}"


class DatabricksJobs:
    """Schedules as Databricks Jobs, through databricks-sdk with the app's own identity."""

    name = "databricks"

    def __init__(self, settings: Settings, client: WorkspaceClient | None = None, *,
                 status_ttl_s: float = STATUS_TTL_S, idle_status_ttl_s: float = IDLE_STATUS_TTL_S):
        self.settings = settings
        self._client = client
        # How long job statuses and run lists are reused while a run is queued or running, and otherwise
        # (0: always ask the workspace).
        self.status_ttl_s, self.idle_status_ttl_s = status_ttl_s, idle_status_ttl_s

    def _w(self) -> WorkspaceClient:
        return self._client or workspace_client(self.settings)

    def _host(self) -> str:
        return str(self._w().config.host or "")

    def _forget(self, job_id: str | None) -> None:
        _cache.forget(self._host(), job_id)

    # --- job definition --------------------------------------------------------------------------
    def job_settings(self, schedule: Schedule, query_name: str) -> jobs.JobSettings:
        """The full job definition of a schedule (also what `reset` sends)."""
        runner_file = self.settings.runner_python_file
        if not runner_file:
            raise UserFacingError(
                "Databricks jobs need to know where the runner is. Upload the runner to the workspace or a "
                "volume and set STACKQL_INVENTORY_RUNNER_FILE to its path (e.g. "
                "/Workspace/Shared/stackql-inventory/runner.py), then restart the app.",
                ErrorKind.CONFIG,
            )
        assert schedule.id is not None
        target = f"{schedule.target_schema}.{schedule.target_table}"
        return jobs.JobSettings(
            name=job_name(schedule),
            description=f"Runs the saved query “{query_name}” into {target}. Managed by {APP_TAG}; "
                        "edit it in the app, not here.",
            schedule=self._cron_schedule(schedule),
            tasks=[jobs.Task(
                task_key=TASK_KEY,
                environment_key=ENVIRONMENT_KEY,
                max_retries=0,
                spark_python_task=jobs.SparkPythonTask(
                    python_file=runner_file,
                    parameters=[*runner_settings(self.settings), "--",
                                "--schedule-id", "{{job.parameters.schedule_id}}",
                                "--backend", Backend.DATABRICKS.value,
                                "--backend-run-id", "{{job.run_id}}",
                                "--trigger", "{{job.parameters.trigger}}",
                                "--requested-by", "{{job.parameters.requested_by}}"],
                ),
            )],
            environments=[jobs.JobEnvironment(
                environment_key=ENVIRONMENT_KEY,
                spec=compute.Environment(environment_version=ENVIRONMENT_VERSION,
                                         dependencies=runner_dependencies(self.settings.runner_dependencies) or None),
            )],
            # Identifiers only: the runner reads the query and secrets itself.
            parameters=[jobs.JobParameterDefinition(name="schedule_id", default=str(schedule.id)),
                        jobs.JobParameterDefinition(name="trigger", default="schedule"),
                        # Who pressed "Run now" (empty for the cron): the run's created_by in the ledger.
                        jobs.JobParameterDefinition(name="requested_by", default="")],
            max_concurrent_runs=1,
            queue=jobs.QueueSettings(enabled=True),
            timeout_seconds=int(self.settings.query_timeout_s) + 1800,
            tags={"app": self.settings.databricks_app_name or APP_TAG, "stackql_inventory_schedule": str(schedule.id),
                  "stackql_inventory_target": target},
        )

    @staticmethod
    def _cron_schedule(schedule: Schedule) -> jobs.CronSchedule:
        return jobs.CronSchedule(
            quartz_cron_expression=cron.to_quartz(schedule.cron_expression),
            timezone_id=schedule.timezone,
            pause_status=jobs.PauseStatus.UNPAUSED if schedule.is_active else jobs.PauseStatus.PAUSED,
        )

    # --- changes ---------------------------------------------------------------------------------
    def create(self, schedule: Schedule, query_name: str) -> str:
        settings = self.job_settings(schedule, query_name)
        try:
            created = self._w().jobs.create(**{k: v for k, v in vars(settings).items() if v is not None})
        except Exception as e:
            raise sdk_error_to_user_facing(e, "the schedule's job") from e
        log.info("databricks_job_created job_id=%s schedule_id=%s", created.job_id, schedule.id)
        return str(created.job_id)

    def update(self, schedule: Schedule, query_name: str) -> JobChange:
        settings = self.job_settings(schedule, query_name)
        if schedule.job_id is None:
            new_id = self.create(schedule, query_name)
            return JobChange(new_id, f"Created Databricks job {new_id} for this schedule.")
        self._forget(schedule.job_id)
        try:
            self._w().jobs.reset(job_id=int(schedule.job_id), new_settings=settings)
        except Exception as e:
            if not is_not_found(e):
                raise sdk_error_to_user_facing(e, f"job {schedule.job_id}") from e
            old = schedule.job_id
            new_id = self.create(schedule, query_name)
            log.warning("databricks_job_recreated old_job_id=%s job_id=%s schedule_id=%s", old, new_id, schedule.id)
            return JobChange(new_id, f"Databricks job {old} had been deleted outside the app; created job {new_id} "
                                     "in its place.")
        return JobChange(schedule.job_id)

    def set_paused(self, schedule: Schedule, query_name: str) -> None:
        if schedule.job_id is None:
            return
        self._forget(schedule.job_id)
        try:
            self._w().jobs.update(job_id=int(schedule.job_id),
                                  new_settings=jobs.JobSettings(schedule=self._cron_schedule(schedule)))
        except Exception as e:
            raise self._job_error(e, schedule.job_id) from e

    def delete(self, schedule: Schedule) -> str:
        if schedule.job_id is None:
            return ""
        self._forget(schedule.job_id)
        try:
            self._w().jobs.delete(job_id=int(schedule.job_id))
        except Exception as e:
            if is_not_found(e):
                return f"Databricks job {schedule.job_id} was already gone (deleted outside the app)."
            raise sdk_error_to_user_facing(e, f"job {schedule.job_id}") from e
        log.info("databricks_job_deleted job_id=%s schedule_id=%s", schedule.job_id, schedule.id)
        return f"Databricks job {schedule.job_id} deleted."

    def run_now(self, session: Session, schedule: Schedule, actor: str) -> str:
        if schedule.job_id is None:
            raise UserFacingError("This schedule has no Databricks job yet. Edit and save it to create one.",
                                  ErrorKind.NOT_FOUND)
        try:
            waiter = self._w().jobs.run_now(job_id=int(schedule.job_id),
                                            job_parameters={"schedule_id": str(schedule.id), "trigger": "manual",
                                                            "requested_by": actor})
        except Exception as e:
            raise self._job_error(e, schedule.job_id) from e
        run_id = waiter.response.run_id
        self._forget(schedule.job_id)
        log.info("databricks_run_started job_id=%s run_id=%s schedule_id=%s by=%s", schedule.job_id, run_id,
                 schedule.id, actor)
        try:
            run = self._w().jobs.get_run(run_id=run_id)
        except Exception as e:  # the run started; only its details are missing
            log.warning("databricks_run_not_read run_id=%s error=%s", run_id, type(e).__name__)
            return f"Run {run_id} started on Databricks."
        state = run_status(run)
        where = f" Follow it at {run.run_page_url}" if run.run_page_url else ""
        return f"Run {run_id} started on Databricks ({state}).{where}"

    def changed(self) -> None:
        return None

    # --- status and history ----------------------------------------------------------------------
    def statuses(self, schedules: list[Schedule]) -> dict[int, JobStatus]:
        backed = [s for s in schedules if s.job_id and s.id is not None]
        if not backed:
            return {}
        with ThreadPoolExecutor(max_workers=min(_STATUS_WORKERS, len(backed))) as pool:
            return dict(zip((s.id for s in backed), pool.map(self._status, backed)))

    def _status(self, schedule: Schedule) -> JobStatus:
        problem, latest = _cache.get((self._host(), str(schedule.job_id), "status"), self._status_ttl,
                                     lambda: self._job_and_latest_run(schedule.job_id))
        if problem or latest is None:
            return JobStatus(problem=problem, latest=None)
        ledger = self._ledger(schedule, [latest])
        return JobStatus(problem="", latest=_run_info(latest, ledger.get(str(latest.run_id))))

    def _status_ttl(self, answer: tuple[str, jobs.BaseRun | None]) -> float:
        problem, latest = answer
        if problem or (latest is not None and run_status(latest) in _ACTIVE):
            return self.status_ttl_s  # a run going (or an error, e.g. 429): ask again soon
        return self.idle_status_ttl_s

    def _job_and_latest_run(self, job_id: str | None) -> tuple[str, jobs.BaseRun | None]:
        """Whether the job is there (a problem message, '' when fine) and its newest run: 2 API calls."""
        w = self._w()
        try:
            w.jobs.get(job_id=int(job_id))
            latest = list(itertools.islice(w.jobs.list_runs(job_id=int(job_id), limit=1), 1))
        except Exception as e:
            if is_not_found(e):
                return self._missing_message(job_id), None
            return sdk_error_to_user_facing(e, f"job {job_id}").message, None
        return "", (latest[0] if latest else None)

    def runs(self, schedule: Schedule, limit: int) -> list[RunInfo]:
        if schedule.job_id is None:
            return _ledger_runs(schedule, limit)
        try:
            found = _cache.get(
                (self._host(), str(schedule.job_id), f"runs:{limit}"),
                lambda runs: (self.status_ttl_s if any(run_status(r) in _ACTIVE for r in runs)
                              else self.idle_status_ttl_s),
                lambda: list(itertools.islice(
                    self._w().jobs.list_runs(job_id=int(schedule.job_id), limit=min(limit, _RUNS_PAGE)), limit)))
        except Exception as e:
            if is_not_found(e):  # the job is gone: what the runner recorded is all there is
                return _ledger_runs(schedule, limit)
            raise self._job_error(e, schedule.job_id) from e
        ledger = self._ledger(schedule, found)
        return [_run_info(r, ledger.get(str(r.run_id))) for r in found]

    def job_url(self, job_id: str | None) -> str:
        host = (self.settings.databricks_host or "").strip().rstrip("/")
        if not job_id or not host:
            return ""
        if not host.startswith(("http://", "https://")):
            host = "https://" + host
        return f"{host}/jobs/{job_id}"

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _ledger(schedule: Schedule, found: list[jobs.BaseRun]) -> dict[str, Run]:
        with session_scope() as s:
            return db.runs_by_backend_id(s, schedule.id or 0, [r.run_id for r in found if r.run_id is not None])

    @staticmethod
    def _missing_message(job_id: str | None) -> str:
        return (f"Databricks job {job_id} no longer exists (deleted outside the app). Edit and save the schedule "
                "to create a new job, or delete the schedule.")

    def _job_error(self, e: Exception, job_id: str | None) -> UserFacingError:
        if is_not_found(e):
            return UserFacingError(self._missing_message(job_id), ErrorKind.NOT_FOUND)
        return sdk_error_to_user_facing(e, f"job {job_id}")


def _ledger_runs(schedule: Schedule, limit: int) -> list[RunInfo]:
    with session_scope() as s:
        return [ledger_run_info(r) for r in db.runs_for(s, schedule.id or 0, limit=limit)]


def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None


def run_status(run: jobs.BaseRun) -> str:
    """queued | running | success | failed | skipped | cancelled, from `status` (not the deprecated `state`)."""
    status = run.status
    state = status.state.value if status is not None and status.state is not None else ""
    if state in _QUEUED_STATES:
        return "queued"
    if state in _RUNNING_STATES:
        return "running"
    if state == "TERMINATED":
        details = status.termination_details
        code = details.code.value if details is not None and details.code is not None else ""
        if code in _SUCCESS_CODES:
            return "success"
        if code in _CANCELLED_CODES:
            return "cancelled"
        if code in _SKIPPED_CODES:
            return "skipped"
        return "failed"
    return "queued"  # no status yet: the run was just created


def _run_info(run: jobs.BaseRun, ledger: Run | None) -> RunInfo:
    status = run_status(run)
    details = run.status.termination_details if run.status is not None else None
    backend_error = ""
    if status in ("failed", "skipped", "cancelled") and details is not None:
        backend_error = details.message or ""
    started, ended = _ms(run.start_time), _ms(run.end_time)
    duration = (run.run_duration / 1000) if run.run_duration else (
        (ended - started).total_seconds() if started and ended else None)
    trigger = run.trigger.value if run.trigger is not None else ""
    return RunInfo(
        run_id=str(run.run_id), trigger=ledger.trigger if ledger else _TRIGGERS.get(trigger, trigger.lower()),
        status=status, started_at=started, finished_at=ended,
        duration_s=ledger.duration_s if ledger and ledger.duration_s is not None else duration,
        rows_written=ledger.rows_written if ledger else None,
        error_class=(ledger.error_class if ledger and ledger.error_class else
                     (details.code.value if status == "failed" and details and details.code else "")),
        error_message=(ledger.error_message if ledger and ledger.error_message else backend_error),
        url=run.run_page_url or "",
    )
