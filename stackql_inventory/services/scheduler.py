"""The local scheduler (embedded default): fires due schedules as `python -m runner` subprocesses.

It sleeps until the earliest `next_run_at` (no polling), wakes early when this process changes a
schedule (`notify_changed`), and re-reads the plan every `recheck_s` for changes made by other
processes. Claims happen in one short transaction under an advisory lock, so several app processes on
one database count runs in flight together and never fire a slot twice (a unique index on
`runs(schedule_id, scheduled_for)` backs that up). At start-up it marks runs left `running` by a dead
runner as failed, then fires each schedule whose slot passed while the app was down, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import sqlalchemy as sa

from stackql_inventory.config import get_settings, runner_env
from stackql_inventory.db import runs as db_runs
from stackql_inventory.db import schedules as db
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import Run, Schedule
from stackql_inventory.services import cron
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RUNNER_ARGV: tuple[str, ...] = (sys.executable, "-m", "runner")
# How often the plan is re-read even when nothing woke the scheduler (changes by other processes).
RECHECK_S = 15.0
# How often runs of dead runners on this host are looked for after start-up.
RECOVERY_EVERY_S = 300.0
# Wait between attempts while the database is unreachable.
DB_RETRY_S = 30.0
# Seconds runners get to stop after SIGTERM when the app shuts down (Databricks allows 15 s in all).
STOP_GRACE_S = 5.0
# A pid whose process started this long after the run began belongs to someone else (pid reuse).
_PID_REUSE_SLACK = timedelta(seconds=30)
# Runs in flight on another host cannot be checked; after this long they are taken for lost.
OTHER_HOST_STALE_AFTER = timedelta(hours=6)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_current_lock = threading.Lock()
_current: Scheduler | None = None


def notify_changed() -> None:
    """Wake this process's scheduler, if one runs, to re-read its plan (thread-safe)."""
    with _current_lock:
        scheduler = _current
    if scheduler is not None:
        scheduler.wake()


def current() -> Scheduler | None:
    """The scheduler running in this process, if any."""
    with _current_lock:
        return _current


def due_at(expr: str, timezone: str, *, after: datetime, failures: int) -> datetime:
    """When a schedule falls due: its first slot after `after`, delayed by the failure backoff.

    The same rule as `cron.is_due(after, now, expr, timezone, failures)`, kept as a time so the
    scheduler can sleep until the earliest one.
    """
    return cron.next_run_after(expr, timezone, after) + cron.backoff(failures)


def slot_of(expr: str, timezone: str, now: datetime) -> datetime:
    """The slot a run fired at `now` belongs to: the latest cron time at or before `now`."""
    slot = cron.missed_slot(expr, timezone, _EPOCH, now)
    return slot if slot is not None else now


def runner_alive(pid: int | None, since: datetime | None) -> bool:
    """Whether `pid` still runs the process recorded for a run that began at `since`.

    A process that started well after the run began is a reused pid, so the runner is gone.
    """
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = datetime.fromtimestamp(process.create_time(), UTC)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: it exists, assume it is ours
        return True
    return since is None or started <= since + _PID_REUSE_SLACK


@dataclass(frozen=True)
class Claim:
    """A run this scheduler claimed and must start."""

    run_id: int
    schedule_id: int
    trigger: str
    claimed_at: datetime | None = None   # the scheduler's clock when it fired the run


@dataclass(frozen=True)
class Started:
    """A runner this scheduler started."""

    claim: Claim
    pid: int
    at: datetime          # the scheduler's clock once the process was spawned

    @property
    def run_id(self) -> int:
        return self.claim.run_id


@dataclass(frozen=True)
class Plan:
    """What one pass over the database decided."""

    claims: list[Claim]
    next_due: datetime | None     # earliest due time of a schedule with nothing in flight
    capacity_left: int            # free concurrency slots after these claims


@dataclass(frozen=True)
class Recovery:
    """What a recovery pass changed."""

    failed_run_ids: list[int]
    planned_schedule_ids: list[int]


@dataclass
class _Child:
    claim: Claim
    process: asyncio.subprocess.Process
    log_path: Path
    started: datetime


@dataclass
class Scheduler:
    """Fires local schedules; one per app process (`run()` until `stop()`)."""

    max_concurrent: int | None = None              # default: settings.max_concurrent_runs
    runner_argv: Sequence[str] = RUNNER_ARGV
    recheck_s: float = RECHECK_S
    recovery_every_s: float = RECOVERY_EVERY_S
    db_retry_s: float = DB_RETRY_S
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    env_factory: Callable[[], dict[str, str]] = runner_env
    log_dir: Path | None = None                    # default: <data dir>/logs/runs
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    register: bool = True                          # become this process's `current()` while running

    def __post_init__(self) -> None:
        settings = get_settings()
        self.max_concurrent = self.max_concurrent or settings.max_concurrent_runs
        self.log_dir = self.log_dir or settings.data_dir / "logs" / "runs"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._children: dict[int, _Child] = {}
        self._watchers: set[asyncio.Task] = set()
        self._stopping = False
        self._done: asyncio.Event | None = None  # set in run(): it needs the running loop
        self._started_at: datetime | None = None
        self._db_down = False
        # Every runner started, in order: for logs, tests and benchmarks.
        self.started_runs: list[Started] = []
        self.recoveries: list[Recovery] = []

    # --- control ---------------------------------------------------------------------------------
    def wake(self) -> None:
        """Re-read the plan now (callable from any thread)."""
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        if _in_loop(loop):
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    @property
    def running_children(self) -> int:
        return len(self._children)

    async def run(self) -> None:
        """Recover, then fire due schedules until `stop()`."""
        global _current
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._done = asyncio.Event()
        self._started_at = self.clock()
        if self.register:
            with _current_lock:
                _current = self
        try:
            log.info("scheduler_started host=%s pid=%s max_concurrent=%s", self.host, self.pid, self.max_concurrent)
            if not await self._recover_until_reachable():
                return
            last_recovery = self._loop.time()
            while not self._stopping:
                self._event.clear()
                timeout = await self._tick()
                if self._stopping:
                    break
                if self._loop.time() - last_recovery >= self.recovery_every_s:
                    await self._recover_once()
                    last_recovery = self._loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout)
        finally:
            if self.register:
                with _current_lock:
                    if _current is self:
                        _current = None
            self._done.set()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop firing, then stop running runners (SIGTERM, then SIGKILL after `grace_s`)."""
        self._stopping = True
        self.wake()
        if self._done is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), grace_s)
        for child in list(self._children.values()):
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        if self._watchers:
            _, pending = await asyncio.wait(set(self._watchers), timeout=grace_s)
            if pending:
                for child in list(self._children.values()):
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                await asyncio.wait(pending, timeout=grace_s)
        log.info("scheduler_stopped host=%s pid=%s", self.host, self.pid)

    # --- one pass --------------------------------------------------------------------------------
    async def _tick(self) -> float:
        """Claim and start what is due; return how long to sleep before the next pass."""
        try:
            plan = await asyncio.to_thread(self.plan, self.clock())
        except UserFacingError as e:
            if e.kind is not ErrorKind.DATABASE:
                raise
            self._database_down(e)
            return self.db_retry_s
        self._database_up()
        for claim in plan.claims:
            await self._start(claim)
        if plan.capacity_left <= 0:
            return self.recheck_s  # a finishing runner wakes us
        if plan.next_due is None:
            return self.recheck_s
        wait = (plan.next_due - self.clock()).total_seconds()
        if wait <= 0:
            # Due but not claimed: another scheduler holds it, or it just fired. Look again shortly.
            return 0.0 if plan.claims else 0.25
        return min(wait, self.recheck_s)

    def plan(self, now: datetime) -> Plan:
        """One claim transaction: queued run-now requests first, then due schedules, within the free slots."""
        with session_scope() as s:
            db.lock_scheduler(s)
            free = self.max_concurrent - db.count_local_in_flight(s)
            claims = [Claim(r.id, r.schedule_id, r.trigger)
                      for r in db.claim_pending_runs(s, limit=free, host=self.host, pid=self.pid)
                      if r.id is not None and r.schedule_id is not None]
            free -= len(claims)
            for schedule in db.lock_due_schedules(s, now, limit=free):
                claim = self._fire(s, schedule, now)
                if claim is not None:
                    claims.append(claim)
                    free -= 1
            return Plan(claims=claims, next_due=db.earliest_due(s), capacity_left=free)

    def _fire(self, s, schedule: Schedule, now: datetime) -> Claim | None:
        assert schedule.id is not None and schedule.next_run_at is not None
        trigger = "catchup" if schedule.next_run_at < (self._started_at or now) else "schedule"
        try:
            slot = slot_of(schedule.cron_expression, schedule.timezone, now)
            # Until the run ends (and its outcome sets the backoff), the next slot after now.
            schedule.next_run_at = due_at(schedule.cron_expression, schedule.timezone, after=now, failures=0)
        except UserFacingError as e:  # a cron that no longer parses: leave it unplanned
            log.warning("schedule_unplannable schedule_id=%s error=%s", schedule.id, e.message)
            schedule.next_run_at = None
            return None
        run = Run(
            schedule_id=schedule.id, query_id=schedule.query_id, target_schema=schedule.target_schema,
            target_table=schedule.target_table, write_mode=schedule.write_mode, trigger=trigger, backend="local",
            status="queued", started_at=now, created_by="scheduler", runner_host=self.host, runner_pid=self.pid,
            scheduled_for=slot,
        )
        try:
            with s.begin_nested():
                db_runs.insert(s, run)
        except sa.exc.IntegrityError:
            log.warning("slot_already_fired schedule_id=%s slot=%s", schedule.id, slot.isoformat())
            return None
        log.info("run_claimed run_id=%s schedule_id=%s trigger=%s slot=%s", run.id, schedule.id, trigger,
                 slot.isoformat())
        return Claim(run.id, schedule.id, trigger, now)

    # --- runners ---------------------------------------------------------------------------------
    async def _start(self, claim: Claim) -> None:
        assert self.log_dir is not None
        argv = [*self.runner_argv, "--schedule-id", str(claim.schedule_id), "--trigger", claim.trigger,
                "--run-id", str(claim.run_id)]
        log_path = self.log_dir / f"run-{claim.run_id}.log"
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as out:
                process = await asyncio.create_subprocess_exec(
                    *argv, cwd=ROOT, env=self.env_factory(), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT,
                )
        except OSError as e:
            log.warning("runner_spawn_failed run_id=%s schedule_id=%s error=%s", claim.run_id, claim.schedule_id,
                        e.strerror or type(e).__name__)
            await asyncio.to_thread(self._finish, claim, None, f"The runner could not be started "
                                    f"({e.strerror or type(e).__name__}).")
            return
        self._children[claim.run_id] = _Child(claim, process, log_path, self.clock())
        self.started_runs.append(Started(claim, process.pid, self.clock()))
        log.info("runner_started run_id=%s schedule_id=%s trigger=%s pid=%s", claim.run_id, claim.schedule_id,
                 claim.trigger, process.pid)
        # The watcher records the pid, so the next due runner is spawned without waiting on the database.
        watcher = asyncio.create_task(self._watch(claim, process, log_path))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, claim: Claim, process: asyncio.subprocess.Process, log_path: Path) -> None:
        try:
            await asyncio.to_thread(_record_pid, claim.run_id, process.pid)
        except UserFacingError as e:
            log.warning("runner_pid_not_recorded run_id=%s error=%s", claim.run_id, e.message)
        code = await process.wait()
        log.info("runner_exited run_id=%s schedule_id=%s code=%s", claim.run_id, claim.schedule_id, code)
        if self._stopping and code != 0:
            message = "The run was stopped because the app shut down."
        else:
            message = (f"The runner exited with code {code} without recording a result. "
                       f"Its output is in {log_path}.")
        try:
            await asyncio.to_thread(self._finish, claim, code, message)
        except UserFacingError as e:
            log.warning("run_not_finalised run_id=%s error=%s", claim.run_id, e.message)
        finally:
            self._children.pop(claim.run_id, None)
            self.wake()

    def _finish(self, claim: Claim, code: int | None, message: str) -> None:
        """After a runner ends: fail its run if it recorded no result, then plan the schedule's next run."""
        now = self.clock()
        with session_scope() as s:
            run = db.get_run(s, claim.run_id)
            if run is not None and run.status in db.IN_FLIGHT:
                error_class = "RunnerExited" if code is not None else "RunnerNotStarted"
                if self._stopping:
                    error_class = "AppShutdown"
                db.fail_run(s, run, error_class=error_class, message=message, now=now)
                log.warning("run_failed_without_result run_id=%s schedule_id=%s code=%s", claim.run_id,
                            claim.schedule_id, code)
            # Plan from when the run was fired: a slot that passed while it ran is due now (once), as
            # Databricks queues a run that fires during the previous one. Manual runs leave the plan alone,
            # except that one which succeeded ends a failure backoff.
            if claim.trigger != "manual":
                _replan(s, claim.schedule_id, claim.claimed_at or now)
            else:
                _lift_backoff(s, claim.schedule_id, now)

    # --- recovery --------------------------------------------------------------------------------
    async def _recover_until_reachable(self) -> bool:
        while not self._stopping:
            if await self._recover_once():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), self.db_retry_s)
            self._event.clear()
        return False

    async def _recover_once(self) -> bool:
        try:
            result = await asyncio.to_thread(self.recover, self.clock())
        except UserFacingError as e:
            if e.kind is not ErrorKind.DATABASE:
                raise
            self._database_down(e)
            return False
        self._database_up()
        if result.failed_run_ids or result.planned_schedule_ids:
            self.recoveries.append(result)
        return True

    def recover(self, now: datetime) -> Recovery:
        """Fail runs whose runner died (this host: the pid is gone; other hosts: silent for hours),
        and give schedules without a next run time one (a slot missed since their last run is due now)."""
        failed: list[int] = []
        planned: list[int] = []
        own = set(self._children)
        with session_scope() as s:
            db.lock_scheduler(s)
            for run in db.lock_local_runs_in_flight(s):
                if run.id in own:
                    continue
                if run.runner_host == self.host:
                    if runner_alive(run.runner_pid, run.started_at):
                        continue
                    message = (f"The runner (pid {run.runner_pid} on {run.runner_host}) ended without recording "
                               "a result: the app or the machine stopped during the run.")
                elif run.started_at is not None and now - run.started_at > OTHER_HOST_STALE_AFTER:
                    message = (f"The run on {run.runner_host or 'another host'} gave no result for "
                               f"{_hours(now - run.started_at)}; it is taken for lost.")
                else:
                    continue
                db.fail_run(s, run, error_class="RunnerLost", message=message, now=now)
                log.warning("run_recovered_as_failed run_id=%s schedule_id=%s host=%s pid=%s", run.id,
                            run.schedule_id, run.runner_host, run.runner_pid)
                failed.append(run.id)
                if run.schedule_id is not None and run.trigger != "manual":
                    _replan(s, run.schedule_id, now)
            for schedule in db.lock_unplanned_schedules(s):
                try:
                    # A slot passed since the last run (or creation) makes this due now: it runs once.
                    schedule.next_run_at = due_at(
                        schedule.cron_expression, schedule.timezone,
                        after=schedule.last_run_at or schedule.created_at or now,
                        failures=schedule.consecutive_failures)
                except UserFacingError as e:
                    log.warning("schedule_unplannable schedule_id=%s error=%s", schedule.id, e.message)
                    continue
                planned.append(schedule.id)
        return Recovery(failed_run_ids=failed, planned_schedule_ids=planned)

    # --- database outages ------------------------------------------------------------------------
    def _database_down(self, e: UserFacingError) -> None:
        if not self._db_down:
            log.warning("scheduler_waiting_for_database retry_s=%s reason=%s", self.db_retry_s, e.message)
        self._db_down = True

    def _database_up(self) -> None:
        if self._db_down:
            log.info("scheduler_database_reachable")
        self._db_down = False


def _replan(s, schedule_id: int, after: datetime) -> None:
    """After a run ended: the first slot after `after` (or after the schedule's last edit), plus the backoff
    its failure count calls for."""
    schedule = db.get_for_update(s, schedule_id)
    if schedule is None or not schedule.is_active or schedule.job_id is not None:
        return
    if schedule.updated_at is not None:
        after = max(after, schedule.updated_at)
    try:
        schedule.next_run_at = due_at(schedule.cron_expression, schedule.timezone, after=after,
                                      failures=schedule.consecutive_failures)
    except UserFacingError as e:
        log.warning("schedule_unplannable schedule_id=%s error=%s", schedule_id, e.message)
        schedule.next_run_at = None


def _lift_backoff(s, schedule_id: int, now: datetime) -> None:
    """After a manual run: if it succeeded (the failure count is back to 0), a next run the backoff had
    pushed later moves back to the schedule's next plain slot."""
    schedule = db.get_for_update(s, schedule_id)
    if (schedule is None or not schedule.is_active or schedule.job_id is not None or schedule.consecutive_failures
            or schedule.next_run_at is None):
        return
    try:
        plain = cron.next_run_after(schedule.cron_expression, schedule.timezone, now)
    except UserFacingError as e:
        log.warning("schedule_unplannable schedule_id=%s error=%s", schedule_id, e.message)
        return
    if plain < schedule.next_run_at:
        schedule.next_run_at = plain


def _record_pid(run_id: int, pid: int) -> None:
    with session_scope() as s:
        db.set_runner_pid(s, run_id, pid)


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} hours"


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
