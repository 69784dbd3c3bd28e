"""One run: ledger row → credentials → stackql stream → inventory write → ANALYZE, views → ledger close.

`execute(RunRequest) -> RunSummary` is the whole run as a plain function (the CLI in `__main__`
only parses arguments, sets up logging and signals, and turns the summary into an exit code).

Concurrency choice: a run that finds its target locked by another run does not wait; it is
recorded as `skipped` with the reason (which run holds the target). A run is also skipped when a
higher-numbered run has already written the same target (e.g. a queued scheduled run that started
after a "Run now"), so run ids grow with write order on every table (see inventory_writer for the
history predicates that rely on it), and when its schedule is paused (scheduled and catch-up
triggers only).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from stackql_inventory import config
from stackql_inventory.db import saved_queries as db_queries
from stackql_inventory.db import schedules as db_schedules
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services import credentials, engine, inventory_writer, runs, sql_text
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact, secret_values

log = logging.getLogger("runner")

EXIT_SUCCESS = 0    # the table was written and its materialized views refreshed
EXIT_FAILED = 1     # the run failed; the ledger row says why
EXIT_USAGE = 2      # bad arguments, or nothing to run (unknown schedule/query, run not queued)
EXIT_SKIPPED = 3    # skipped (target busy, a newer run already wrote it, schedule paused); reason recorded
EXIT_CANCELLED = 4  # stopped by SIGTERM/SIGINT or engine.cancel(); nothing was written
EXIT_NO_LEDGER = 5  # the run could not be recorded (database unreachable)

EXIT_CODES = {"success": EXIT_SUCCESS, "failed": EXIT_FAILED, "skipped": EXIT_SKIPPED,
              "cancelled": EXIT_CANCELLED}

DEFAULT_TIMEOUT_S = 3600.0

# The run the current thread executes, for log lines from deeper layers (engine, writer).
current_run: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("stackql_run", default={})


class RunCancelled(BaseException):
    """Raised into a run when its process is asked to stop (a BaseException: nothing swallows it)."""


@dataclass(frozen=True)
class RunRequest:
    """What to run: a schedule (`schedule_id`), or a one-off query into a target (`query_id` + `target_table`)."""

    schedule_id: int | None = None
    query_id: int | None = None
    target_table: str | None = None
    target_schema: str = inventory_writer.DEFAULT_SCHEMA
    write_mode: str = "replace"
    key_columns: tuple[str, ...] = ()
    trigger: str | None = None          # default: "schedule" for schedules, "adhoc" for one-offs
    backend: str | None = None          # default: the configured jobs backend
    backend_run_id: str | None = None
    run_id: int | None = None           # take over this queued ledger row instead of opening one
    created_by: str = ""                # who asked (default: "scheduler" or the local user)
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    run_id: int | None
    status: str                          # success | failed | skipped | cancelled
    exit_code: int
    target: str
    rows_written: int | None = None
    duration_s: float = 0.0
    error_class: str | None = None
    error_message: str | None = None     # secrets redacted
    refreshed_views: tuple[str, ...] = ()
    write: inventory_writer.WriteResult | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Plan:
    """The run's inputs, read from the database before anything is recorded."""

    query_id: int
    query_name: str
    query_text: str
    providers: tuple[str, ...]
    schedule_id: int | None
    schedule_active: bool
    cron: str | None
    timezone: str | None
    target_schema: str
    target_table: str
    write_mode: str
    key_columns: tuple[str, ...]


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _plan(req: RunRequest) -> _Plan:
    with session_scope() as s:
        if req.schedule_id is not None:
            schedule = db_schedules.get(s, req.schedule_id)
            if schedule is None:
                raise UserFacingError(f"Schedule {req.schedule_id} does not exist (it may have been deleted).",
                                      ErrorKind.NOT_FOUND)
            query = db_queries.get(s, schedule.query_id)
            if query is None:
                raise UserFacingError(f"The saved query {schedule.query_id} of schedule {schedule.id} does not exist.",
                                      ErrorKind.NOT_FOUND)
            target_schema, target_table = schedule.target_schema, schedule.target_table
            mode, keys = schedule.write_mode, tuple(schedule.key_columns or ())
            active, cron, tz = schedule.is_active, schedule.cron_expression, schedule.timezone
        else:
            if req.query_id is None or not req.target_table:
                raise UserFacingError("Give --schedule-id, or --query-id with --target-table.", ErrorKind.VALIDATION)
            query = db_queries.get(s, req.query_id)
            if query is None:
                raise UserFacingError(f"Saved query {req.query_id} does not exist.", ErrorKind.NOT_FOUND)
            target_schema, target_table = req.target_schema, req.target_table
            mode, keys = req.write_mode, tuple(req.key_columns)
            active, cron, tz = True, None, None
        providers = [query.provider] if query.provider else []
        providers += [fqn.split(".", 1)[0] for fqn in sql_text.referenced_resources(query.query_text)]
        return _Plan(
            query_id=int(query.id or 0), query_name=query.name, query_text=query.query_text,
            providers=tuple(dict.fromkeys(p for p in providers if p)), schedule_id=req.schedule_id,
            schedule_active=bool(active), cron=cron, timezone=tz, target_schema=target_schema,
            target_table=target_table, write_mode=mode, key_columns=keys)


def _open_ledger(req: RunRequest, plan: _Plan, trigger: str, backend: str) -> runs.RunView:
    if req.run_id is not None:
        return runs.claim_run(req.run_id, schedule_id=plan.schedule_id, query_id=plan.query_id,
                              target_schema=plan.target_schema, target_table=plan.target_table,
                              write_mode=plan.write_mode, backend_run_id=req.backend_run_id)
    created_by = req.created_by or ("scheduler" if trigger in ("schedule", "catchup") else config.local_user())
    return runs.open_run(target_schema=plan.target_schema, target_table=plan.target_table,
                         write_mode=plan.write_mode, trigger=trigger, schedule_id=plan.schedule_id,
                         query_id=plan.query_id, backend=backend, backend_run_id=req.backend_run_id,
                         created_by=created_by)


def _fields(**fields: Any) -> str:
    from runner.logfmt import kv

    return kv(**fields)


def execute(req: RunRequest) -> RunSummary:
    """Run one schedule (or one-off query) end to end and record it in the ledger.

    A run's own failures are not raised: they are in the summary (status, exit_code, redacted
    error) and the ledger. A request that names nothing runnable gets EXIT_USAGE, a database that
    cannot record the run EXIT_NO_LEDGER. RunCancelled (a stop request) ends the run as cancelled.
    """
    t0 = time.monotonic()
    trigger = req.trigger or ("schedule" if req.schedule_id is not None else "adhoc")
    target_hint = f"{req.target_schema}.{req.target_table}" if req.target_table else f"schedule {req.schedule_id}"
    try:
        plan = _plan(req)
    except UserFacingError as exc:
        kind_code = EXIT_NO_LEDGER if exc.kind is ErrorKind.DATABASE else EXIT_USAGE
        log.warning("event=run_refused %s", _fields(schedule_id=req.schedule_id, query_id=req.query_id,
                                                    run_id=req.run_id, error=exc.message))
        if req.run_id is not None and kind_code == EXIT_USAGE:
            _fail_queued(req.run_id, exc)
        return RunSummary(req.run_id, "failed", kind_code, target_hint, error_class=exc.kind.value,
                          error_message=exc.message, duration_s=time.monotonic() - t0)
    target = f"{plan.target_schema}.{plan.target_table}"
    backend = req.backend or config.get_settings().jobs_backend.value
    try:
        run = _open_ledger(req, plan, trigger, backend)
    except UserFacingError as exc:
        code = EXIT_NO_LEDGER if exc.kind is ErrorKind.DATABASE else EXIT_USAGE
        log.warning("event=run_refused %s", _fields(schedule_id=plan.schedule_id, run_id=req.run_id,
                                                    error=exc.message))
        return RunSummary(req.run_id, "failed", code, target, error_class=exc.kind.value,
                          error_message=exc.message, duration_s=time.monotonic() - t0)
    token = current_run.set({"run_id": run.id, "schedule_id": plan.schedule_id})
    try:
        return _run(req, plan, run, trigger, t0)
    finally:
        current_run.reset(token)


def _fail_queued(run_id: int, exc: UserFacingError) -> None:
    """Close a queued row whose schedule or query vanished (best effort: it may not exist either)."""
    try:
        run = runs.get_run(run_id)
        if run is not None and run.status == "queued":
            runs.finish_run(run_id, status="failed", error_class=exc.kind.value, error_message=exc.message)
    except UserFacingError:
        pass


def _run(req: RunRequest, plan: _Plan, run: runs.RunView, trigger: str, t0: float) -> RunSummary:
    target = f"{plan.target_schema}.{plan.target_table}"
    log.info("event=run_started %s", _fields(
        run_id=run.id, schedule_id=plan.schedule_id, query_id=plan.query_id, trigger=trigger, target=target,
        mode=plan.write_mode, backend=run.backend, backend_run_id=run.backend_run_id))
    secrets: list[str] = []
    rows_written: int | None = None
    write_result = None
    refreshed: tuple[str, ...] = ()
    status, error_class, message = "success", None, None
    cancel_guard = _CancelGuard()
    try:
        with cancel_guard, contextlib.ExitStack() as stack:
            inventory_writer.validate_name(plan.target_schema, "schema")
            inventory_writer.validate_name(plan.target_table, "table")
            if trigger in ("schedule", "catchup") and not plan.schedule_active:
                raise _Skip(f"Schedule {plan.schedule_id} is paused; resume it to run it on its cron.")
            env = credentials.env_for_providers(plan.providers)
            secrets = secret_values(env)
            try:
                target_session = stack.enter_context(
                    inventory_writer.open_target(plan.target_schema, plan.target_table))
            except inventory_writer.TargetBusy:
                holders = runs.running_on(plan.target_schema, plan.target_table, run.id)
                who = (f"Run {holders[0].id} (started {holders[0].started_at:%Y-%m-%d %H:%M:%S %Z})"
                       if holders and holders[0].started_at else "Another run")
                raise _Skip(f"{who} is writing {target} right now; this run was skipped so that two runs never "
                            "interleave. The next scheduled run writes it again.") from None
            newer = runs.newer_write(plan.target_schema, plan.target_table, run.id)
            if newer is not None:
                raise _Skip(f"Run {newer.id} (newer) already wrote {target}; this older run was skipped so that "
                            "runs write each table in order.")
            collected_at = target_session.now()
            limits = engine.QueryLimits(row_limit=None, timeout_s=req.timeout_s)
            with engine.stream(plan.query_text, env, limits, run_id=f"run-{run.id}") as stream:
                write_result = target_session.write(
                    stream.columns, stream, mode=plan.write_mode, run_id=run.id, collected_at=collected_at,
                    key_columns=plan.key_columns,
                    provenance=inventory_writer.Provenance(
                        query_name=plan.query_name, query_id=plan.query_id, schedule_id=plan.schedule_id,
                        cron=plan.cron, timezone=plan.timezone))
            rows_written = write_result.rows_written
            runs.mark_written(run.id, rows_written)
            target_session.analyze()
            refresh = target_session.refresh_dependants()
            refreshed = refresh.refreshed
            refresh.raise_for_failures(target)
    except _Skip as skip:
        status, error_class, message = "skipped", ErrorKind.CONFLICT.value, skip.reason
    except RunCancelled:
        status, error_class, message = "cancelled", ErrorKind.CANCELLED.value, (
            "The run was stopped (the runner process was asked to terminate). Nothing was written.")
    except UserFacingError as exc:
        if exc.kind is ErrorKind.CANCELLED:
            status = "cancelled"
        else:
            status = "failed"
        error_class, message = exc.kind.value, exc.message
    except Exception as exc:  # a bug: record it (redacted) rather than leaving the run "running"
        status, error_class = "failed", ErrorKind.INTERNAL.value
        message = redact(f"Internal error ({type(exc).__name__}): {exc}", secrets)
        # The traceback goes to the run's log redacted too: its frames can quote credential values.
        log.error("event=run_crashed %s\n%s", _fields(run_id=run.id, schedule_id=plan.schedule_id),
                  redact("".join(traceback.format_exception(exc)), secrets))
    finally:
        cancel_guard.finalizing()
    if message:
        message = redact(message, secrets)
    try:
        closed = runs.finish_run(run.id, status=status, rows_written=rows_written, error_class=error_class,
                                 error_message=message, secrets=secrets)
        duration = closed.duration_s if closed.duration_s is not None else time.monotonic() - t0
        code = EXIT_CODES[status]
    except UserFacingError as exc:
        log.warning("event=run_not_recorded %s", _fields(run_id=run.id, error=redact(exc.message, secrets)))
        duration, code = time.monotonic() - t0, EXIT_NO_LEDGER
    level = logging.INFO if status in ("success", "skipped") else logging.WARNING
    log.log(level, "event=run_finished %s", _fields(
        run_id=run.id, schedule_id=plan.schedule_id, status=status, target=target, rows=rows_written,
        duration_s=round(duration, 3), views_refreshed=len(refreshed), error_class=error_class, error=message))
    return RunSummary(run.id, status, code, target, rows_written=rows_written, duration_s=duration,
                      error_class=error_class, error_message=message, refreshed_views=refreshed,
                      write=write_result)


class _CancelGuard:
    """Lets a stop request (signal) raise RunCancelled while the run works, not while it records itself."""

    _lock = threading.Lock()
    _active: _CancelGuard | None = None

    def __init__(self) -> None:
        self.stopping = False
        self._done = False

    def __enter__(self) -> _CancelGuard:
        with _CancelGuard._lock:
            _CancelGuard._active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finalizing()

    def finalizing(self) -> None:
        with _CancelGuard._lock:
            self._done = True
            if _CancelGuard._active is self:
                _CancelGuard._active = None


def request_stop() -> bool:
    """Called from a signal handler (main thread): raise RunCancelled into the working run, if any.

    Returns False when no run is working (e.g. it is already recording its outcome).
    """
    with _CancelGuard._lock:
        active = _CancelGuard._active
        if active is None or active._done or active.stopping:
            return False
        active.stopping = True
    raise RunCancelled()
