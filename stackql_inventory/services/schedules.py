"""Schedules: saved queries run on a cron into inventory tables (validation, changes, status, history).

Every change validates first and saves nothing on error; the job backend (`services/jobs.py`) is called
inside the same transaction, so a backend failure rolls the database change back too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from stackql_inventory import formatting
from stackql_inventory.db import saved_queries
from stackql_inventory.db import schedules as db_schedules
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import INVENTORY_SCHEMA, WRITE_MODES, Run, SavedQuery, Schedule
from stackql_inventory.services import cron, identity, sql_text
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.jobs import JobsBackend, JobStatus, RunInfo, backend_for, ledger_run_info
from stackql_inventory.services.scheduler import due_at

log = logging.getLogger(__name__)

TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_KEY_COLUMNS = 16
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class ScheduleForm:
    """What the new/edit dialog submits."""

    query_id: int | None
    cron_expression: str
    timezone: str
    target_table: str
    write_mode: str = "replace"
    key_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as the list shows it."""

    id: int
    query_id: int
    query_name: str
    cron_expression: str
    cron_description: str
    timezone: str
    next_run_at: datetime | None       # None while paused
    target_schema: str
    target_table: str
    target: str                        # schema.table
    write_mode: str
    key_columns: tuple[str, ...]
    is_active: bool
    failures: int                      # consecutive failed runs (each one delays the next run more)
    backoff_delay: timedelta           # how much later than its cron slot the next run is, because of failures
    last_run_at: datetime | None
    last_run_status: str               # status of the newest run ('' when it never ran)
    status: str                        # queued | running | success | failed | skipped | cancelled | never run
    problem: str                       # backend trouble (e.g. the job was deleted outside the app), else ''
    job_id: str
    job_url: str

    @property
    def in_flight(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def backoff_note(self) -> str:
        """`delayed 4 min after 2 failed runs`, or '' when failures do not delay the next run."""
        return backoff_note(self.failures, self.backoff_delay)


@dataclass(frozen=True)
class CronPreview:
    """Instant feedback on a cron field: its meaning and next fire times, or why it is invalid."""

    description: str
    next_runs: list[datetime]          # aware, in the chosen time zone
    error: str


@dataclass(frozen=True)
class Outcome:
    """A saved schedule and anything the user should be told about the change."""

    schedule: ScheduleView
    notice: str = ""


# --- reading -------------------------------------------------------------------------------------


def preview_cron(expr: str, timezone: str, *, now: datetime | None = None, count: int = 5) -> CronPreview:
    """Describe `expr` and list its next `count` runs in `timezone`; invalid input gives `error`, never raises."""
    now = now or datetime.now(UTC)
    try:
        cron.validate(expr, timezone)
        return CronPreview(cron.describe(expr), cron.next_runs(expr, timezone, after=now, count=count), "")
    except UserFacingError as e:
        return CronPreview("", [], e.message)


def list_schedules(*, now: datetime | None = None, backend: JobsBackend | None = None) -> list[ScheduleView]:
    """Every schedule with its query name, next run, and the status of its newest run."""
    now = now or datetime.now(UTC)
    backend = backend or backend_for()
    with session_scope() as s:
        rows = db_schedules.list_with_queries(s)
        latest = db_schedules.latest_runs(s)
    statuses = backend.statuses([sch for sch, _ in rows]) if rows else {}
    return [_view(sch, q, latest.get(sch.id or 0), statuses.get(sch.id or 0), backend, now) for sch, q in rows]


def get_schedule(schedule_id: int, *, backend: JobsBackend | None = None) -> ScheduleView:
    """One schedule (NOT_FOUND when it was deleted)."""
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id)
        query = saved_queries.get(s, schedule.query_id)
        latest = db_schedules.latest_runs(s).get(schedule_id)
        return _view(schedule, query, latest, None, backend, datetime.now(UTC))


def run_history(schedule_id: int, *, limit: int = HISTORY_LIMIT, backend: JobsBackend | None = None) -> list[RunInfo]:
    """A schedule's runs, newest first (from Databricks for job-backed schedules, else the run ledger)."""
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id)
    if schedule.job_id is None and backend.name != "local":
        with session_scope() as s:
            return [ledger_run_info(r) for r in db_schedules.runs_for(s, schedule_id, limit=limit)]
    return backend.runs(schedule, limit)


def backoff_note(failures: int, delay: timedelta) -> str:
    """What the list says under a next run that failures pushed back ('' when nothing is delayed)."""
    if failures <= 0 or delay <= timedelta(0):
        return ""
    return f"delayed {formatting.span(delay)} after {failures} failed run{'' if failures == 1 else 's'}"


def suggest_table_name(query_name: str) -> str:
    """A valid inventory table name from a saved query's name: “EC2 instances (us-east-1)” →
    `ec2_instances_us_east_1` ('' when nothing usable is left)."""
    name = re.sub(r"[^a-z0-9]+", "_", (query_name or "").lower()).strip("_")
    if name and name[0].isdigit():
        name = f"q_{name}"
    return name[:63].rstrip("_")


def parse_key_columns(text: str) -> tuple[str, ...]:
    """Key columns typed as `id, region` (commas or spaces) → ("id", "region")."""
    return tuple(part for part in re.split(r"[\s,]+", text or "") if part)


# --- changing ------------------------------------------------------------------------------------


def create_schedule(actor: Identity, form: ScheduleForm, *, now: datetime | None = None,
                    backend: JobsBackend | None = None) -> Outcome:
    """Validate and save a new schedule, creating its job; nothing is saved on error."""
    identity.require_editor(actor, "create schedules")
    now = now or datetime.now(UTC)
    backend = backend or backend_for()
    created_job: list[str] = []
    try:
        with session_scope() as s:
            query, form = _validated(s, form, current=None)
            schedule = Schedule(
                query_id=query.id, cron_expression=form.cron_expression.strip(), timezone=form.timezone,
                target_schema=INVENTORY_SCHEMA, target_table=form.target_table, write_mode=form.write_mode,
                key_columns=list(form.key_columns), is_active=True, created_by=actor.user,
                next_run_at=due_at(form.cron_expression, form.timezone, after=now, failures=0),
                created_at=now, updated_at=now,
            )
            _insert(s, schedule)
            job_id = backend.create(schedule, query.name)
            if job_id is not None:
                created_job.append(job_id)
            schedule.job_id = job_id
            view = _view(schedule, query, None, None, backend, now)
    except Exception:
        # The database change rolled back: take back the job created for it.
        for job_id in created_job:
            _forget_job(backend, job_id)
        raise
    backend.changed()
    log.info("schedule_created schedule_id=%s target=%s job_id=%s by=%s", view.id, view.target, view.job_id,
             actor.user)
    return Outcome(view)


def update_schedule(actor: Identity, schedule_id: int, form: ScheduleForm, *, now: datetime | None = None,
                    backend: JobsBackend | None = None) -> Outcome:
    """Validate and save changes to a schedule, updating its job; nothing is saved on error."""
    identity.require_editor(actor, "edit schedules")
    now = now or datetime.now(UTC)
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id, lock=True)
        query, form = _validated(s, form, current=schedule)
        schedule.query_id = query.id
        schedule.cron_expression = form.cron_expression.strip()
        schedule.timezone = form.timezone
        schedule.target_table = form.target_table
        schedule.write_mode = form.write_mode
        schedule.key_columns = list(form.key_columns)
        schedule.updated_at = now
        if schedule.is_active:
            schedule.next_run_at = due_at(schedule.cron_expression, schedule.timezone, after=now,
                                          failures=schedule.consecutive_failures)
        _flush_unique(s, schedule)
        change = backend.update(schedule, query.name)
        schedule.job_id = change.job_id
        view = _view(schedule, query, db_schedules.latest_runs(s).get(schedule_id), None, backend, now)
    backend.changed()
    log.info("schedule_updated schedule_id=%s target=%s by=%s", schedule_id, view.target, actor.user)
    return Outcome(view, change.notice)


def set_active(actor: Identity, schedule_id: int, active: bool, *, now: datetime | None = None,
               backend: JobsBackend | None = None) -> Outcome:
    """Resume (`active=True`) or pause a schedule and its job."""
    identity.require_editor(actor, "resume schedules" if active else "pause schedules")
    now = now or datetime.now(UTC)
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id, lock=True)
        query = saved_queries.get(s, schedule.query_id)
        schedule.is_active = active
        schedule.updated_at = now
        # Resuming plans from now: slots that passed while paused are not caught up.
        schedule.next_run_at = (due_at(schedule.cron_expression, schedule.timezone, after=now,
                                       failures=schedule.consecutive_failures) if active else None)
        backend.set_paused(schedule, query.name if query else "")
        view = _view(schedule, query, db_schedules.latest_runs(s).get(schedule_id), None, backend, now)
    backend.changed()
    log.info("schedule_%s schedule_id=%s by=%s", "resumed" if active else "paused", schedule_id, actor.user)
    return Outcome(view)


def delete_schedule(actor: Identity, schedule_id: int, *, drop_table: bool = False,
                    backend: JobsBackend | None = None) -> str:
    """Delete a schedule and its job; drop its inventory table only when asked. Returns what to tell the user."""
    identity.require_editor(actor, "delete schedules")
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id, lock=True)
        busy = db_schedules.in_flight(s, schedule_id) if schedule.job_id is None else None
        if busy is not None:
            raise UserFacingError(
                f"A run of this schedule is {busy.status}. Wait for it to finish, then delete the schedule.",
                ErrorKind.CONFLICT,
            )
        target = f"{schedule.target_schema}.{schedule.target_table}"
        notice = backend.delete(schedule)
        dropped = db_schedules.drop_table(s, schedule.target_schema, schedule.target_table) if drop_table else False
        db_schedules.delete(s, schedule)
    backend.changed()
    log.info("schedule_deleted schedule_id=%s target=%s dropped_table=%s by=%s", schedule_id, target, dropped,
             actor.user)
    parts = [f"Schedule for {target} deleted."]
    if drop_table:
        parts.append(f"Table {target} dropped." if dropped else f"Table {target} did not exist.")
    else:
        parts.append(f"Table {target} was kept.")
    if notice:
        parts.append(notice)
    return " ".join(parts)


def run_now(actor: Identity, schedule_id: int, *, backend: JobsBackend | None = None) -> str:
    """Start a run of the schedule at once; returns what to tell the user."""
    identity.require_editor(actor, "run schedules")
    backend = backend or backend_for()
    with session_scope() as s:
        schedule = _existing(s, schedule_id, lock=True)
        message = backend.run_now(s, schedule, actor.user)
    backend.changed()
    log.info("schedule_run_requested schedule_id=%s by=%s", schedule_id, actor.user)
    return message


# --- validation ----------------------------------------------------------------------------------


def _invalid(message: str) -> UserFacingError:
    return UserFacingError(message, ErrorKind.VALIDATION)


def _validated(s: Session, form: ScheduleForm, *, current: Schedule | None) -> tuple[SavedQuery, ScheduleForm]:
    """The saved query and the normalised form; raises VALIDATION for the first problem found."""
    if form.query_id is None:
        raise _invalid("Pick the saved query to schedule.")
    query = saved_queries.get(s, form.query_id)
    if query is None:
        raise _invalid(f"Saved query #{form.query_id} no longer exists. Pick another query.")
    _check_single_statement(query)
    expr = (form.cron_expression or "").strip()
    timezone = (form.timezone or "").strip()
    cron.validate(expr, timezone)
    table = (form.target_table or "").strip()
    _check_table(s, table, current)
    mode = (form.write_mode or "").strip().lower()
    if mode not in WRITE_MODES:
        raise _invalid(f"Write mode `{form.write_mode}` is unknown. Use one of: {', '.join(WRITE_MODES)}.")
    keys = tuple(k.strip() for k in form.key_columns if k.strip()) if mode == "history" else ()
    for key in keys:
        if not COLUMN_NAME.match(key):
            raise _invalid(f"Key column `{key}` is not a column name: use letters, digits and underscores, "
                           "starting with a letter or underscore.")
    if len({k.lower() for k in keys}) != len(keys):
        raise _invalid("Each key column may appear only once.")
    if len(keys) > MAX_KEY_COLUMNS:
        raise _invalid(f"Use at most {MAX_KEY_COLUMNS} key columns.")
    return query, ScheduleForm(query.id, expr, timezone, table, mode, keys)


def _check_single_statement(query: SavedQuery) -> None:
    """A schedule writes one result into one table: its query must hold exactly one statement."""
    count = len(sql_text.split_statements(query.query_text or ""))
    if count == 0:
        raise _invalid(f"The saved query “{query.name}” is empty. Open it in the IDE, write the SELECT to "
                       "schedule and save it, then pick it again.")
    if count > 1:
        raise _invalid(f"The saved query “{query.name}” holds {count} statements; a schedule writes one result "
                       "into one table. Open it in the IDE, keep the one SELECT to schedule and save it, "
                       "then pick it again.")


def _check_table(s: Session, table: str, current: Schedule | None) -> None:
    if not table:
        raise _invalid("Enter the inventory table to write, e.g. `aws_ec2_instances`.")
    if not TABLE_NAME.match(table):
        raise _invalid(
            f"`{table}` is not a valid table name: use at most 63 lower-case letters, digits and underscores, "
            "starting with a letter or underscore (e.g. `aws_ec2_instances`).")
    owner = db_schedules.target_owner(s, INVENTORY_SCHEMA, table, excluding=current.id if current else None)
    if owner is not None:
        other = db_schedules.get(s, owner)
        query = saved_queries.get(s, other.query_id) if other else None
        by = f" by the schedule of “{query.name}”" if query else " by another schedule"
        raise UserFacingError(f"{INVENTORY_SCHEMA}.{table} is already written{by}. Pick another table name.",
                              ErrorKind.VALIDATION)
    if current is not None and current.target_table == table:
        return  # its own table
    found = db_schedules.relation(s, INVENTORY_SCHEMA, table)
    if found is not None and not found.is_inventory_table:
        raise _invalid(f"{INVENTORY_SCHEMA}.{table} already exists as a {found.kind} the scheduler did not create. "
                       "Pick another table name.")


def _insert(s: Session, schedule: Schedule) -> None:
    try:
        with s.begin_nested():
            db_schedules.add(s, schedule)
    except sa.exc.IntegrityError as e:
        raise _target_taken(schedule) from e


def _flush_unique(s: Session, schedule: Schedule) -> None:
    try:
        with s.begin_nested():
            s.flush()
    except sa.exc.IntegrityError as e:
        raise _target_taken(schedule) from e


def _target_taken(schedule: Schedule) -> UserFacingError:
    # Two people saving the same table at once: the unique constraint decides.
    return _invalid(f"{schedule.target_schema}.{schedule.target_table} was just taken by another schedule. "
                    "Pick another table name.")


# --- helpers -------------------------------------------------------------------------------------


def _existing(s: Session, schedule_id: int, *, lock: bool = False) -> Schedule:
    schedule = (db_schedules.get_for_update if lock else db_schedules.get)(s, schedule_id)
    if schedule is None:
        raise UserFacingError("This schedule no longer exists; someone deleted it. Reload the page.",
                              ErrorKind.NOT_FOUND)
    return schedule


def _forget_job(backend: JobsBackend, job_id: str) -> None:
    try:
        backend.delete(Schedule(id=0, query_id=0, cron_expression="", target_table="", job_id=job_id))
    except UserFacingError as e:
        log.warning("orphan_job_not_deleted job_id=%s error=%s", job_id, e.message)


def _describe(expr: str) -> str:
    try:
        return cron.describe(expr)
    except UserFacingError:
        return "Invalid cron expression"


def _next_run(schedule: Schedule, now: datetime) -> datetime | None:
    if not schedule.is_active:
        return None
    if schedule.job_id is None:
        return schedule.next_run_at
    try:  # Databricks plans job-backed schedules itself
        return cron.next_run_after(schedule.cron_expression, schedule.timezone, now)
    except UserFacingError:
        return None


def _backoff_delay(schedule: Schedule, next_run_at: datetime | None, in_flight: bool) -> timedelta:
    """How much later than its cron slot the schedule's next run is because of failed runs (0 when it is not).

    The local scheduler plans a schedule from its last run (or its last edit): the first slot after it, plus
    `cron.backoff(consecutive_failures)`. A plan that is not later than that first slot is not delayed, e.g.
    after a failed manual run (manual runs leave the plan alone). While a run is in flight the plan is the
    plain next slot (its outcome sets the backoff); Databricks plans job-backed schedules itself.
    """
    if (in_flight or not schedule.is_active or schedule.job_id is not None or next_run_at is None
            or not schedule.consecutive_failures):
        return timedelta(0)
    anchors = [t for t in (schedule.last_run_at, schedule.updated_at) if t is not None]
    if not anchors:
        return timedelta(0)
    try:
        slot = cron.next_run_after(schedule.cron_expression, schedule.timezone, max(anchors))
    except UserFacingError:
        return timedelta(0)
    return max(next_run_at - slot, timedelta(0))


def _view(schedule: Schedule, query: SavedQuery | None, latest: Run | None, backend_status: JobStatus | None,
          backend: JobsBackend, now: datetime) -> ScheduleView:
    run: RunInfo | None = backend_status.latest if backend_status and backend_status.latest else (
        ledger_run_info(latest) if latest is not None else None)
    status = run.status if run else (schedule.last_run_status or "never run")
    last_run_at = run.started_at if run else schedule.last_run_at
    job_id = schedule.job_id or ""
    next_run_at = _next_run(schedule, now)
    return ScheduleView(
        id=schedule.id or 0, query_id=schedule.query_id, query_name=query.name if query else "(deleted query)",
        cron_expression=schedule.cron_expression, cron_description=_describe(schedule.cron_expression),
        timezone=schedule.timezone, next_run_at=next_run_at, target_schema=schedule.target_schema,
        target_table=schedule.target_table, target=f"{schedule.target_schema}.{schedule.target_table}",
        write_mode=schedule.write_mode, key_columns=tuple(schedule.key_columns or ()), is_active=schedule.is_active,
        failures=schedule.consecutive_failures,
        backoff_delay=_backoff_delay(schedule, next_run_at, status in ("queued", "running")), last_run_at=last_run_at,
        last_run_status=run.status if run else (schedule.last_run_status or ""),
        status=status, problem=backend_status.problem if backend_status else "", job_id=job_id,
        job_url=backend.job_url(job_id) if job_id else "",
    )

