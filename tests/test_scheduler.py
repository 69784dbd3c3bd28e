"""The local scheduler: due times (DST, backoff), firing on time, no overlap, concurrency, catch-up,
crashed-run recovery, two schedulers on one database, shutdown, and idle CPU with 1,000 schedules."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from stackql_inventory.services import cron, schedules
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.scheduler import Scheduler, due_at, runner_alive, slot_of
from tests.support.scheduling import (
    ROOT,
    RUNNER_ENV,
    STAND_IN_RUNNER,
    SchedulerThread,
    offset_clock,
    offset_to_minute_boundary,
    read_records,
    runs,
    schedule_row,
    seed_query,
    wait_for,
)

ANA = Identity(user="ana@example.com", display_name="Ana", source="proxy")
HOST = socket.gethostname()


@pytest.fixture
def runner_spec(monkeypatch: pytest.MonkeyPatch, db_uri: str, tmp_path: Path):
    """Point child processes at this test's database; returns a setter for the stand-in runner's behaviour."""
    monkeypatch.setenv("DATABASE_URL", db_uri)
    record = tmp_path / "runner-records.jsonl"

    def set_spec(**spec) -> Path:
        monkeypatch.setenv(RUNNER_ENV, json.dumps({"record": str(record), **spec}))
        return record

    set_spec()
    return set_spec


def _scheduler(**kwargs) -> Scheduler:
    kwargs.setdefault("runner_argv", STAND_IN_RUNNER)
    kwargs.setdefault("recheck_s", 60.0)
    return Scheduler(**kwargs)


def _create(db: sa.Engine, expr: str, table: str, *, now: datetime, tz: str = "UTC", query_id: int | None = None):
    qid = query_id or seed_query(db, name=f"q-{table}")
    form = schedules.ScheduleForm(qid, expr, tz, table, "replace")
    return schedules.create_schedule(ANA, form, now=now).schedule


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- due times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "tz", "after", "failures", "expected"), [
    # every 5 minutes, no failures: the next slot
    ("*/5 * * * *", "UTC", _utc(2026, 1, 5, 10, 2), 0, _utc(2026, 1, 5, 10, 5)),
    # three failures: the next slot plus 2**3 = 8 minutes
    ("*/5 * * * *", "UTC", _utc(2026, 1, 5, 10, 2), 3, _utc(2026, 1, 5, 10, 13)),
    # backoff is capped at an hour
    ("*/5 * * * *", "UTC", _utc(2026, 1, 5, 10, 2), 9, _utc(2026, 1, 5, 11, 5)),
    # daily 02:30 Berlin on spring-forward day: 02:30 does not exist, fires at 03:00 CEST = 01:00 UTC
    ("30 2 * * *", "Europe/Berlin", _utc(2026, 3, 28, 12, 0), 0, _utc(2026, 3, 29, 1, 0)),
    # daily 02:30 Berlin on fall-back day: the first 02:30 (CEST, 00:30 UTC) only
    ("30 2 * * *", "Europe/Berlin", _utc(2026, 10, 24, 12, 0), 0, _utc(2026, 10, 25, 0, 30)),
    ("30 2 * * *", "Europe/Berlin", _utc(2026, 10, 25, 0, 30), 0, _utc(2026, 10, 26, 1, 30)),
    # every 30 minutes across fall-back: the repeated hour runs twice (real elapsed time)
    ("*/30 * * * *", "Europe/Berlin", _utc(2026, 10, 25, 0, 30), 0, _utc(2026, 10, 25, 1, 0)),
    ("*/30 * * * *", "Europe/Berlin", _utc(2026, 10, 25, 1, 0), 0, _utc(2026, 10, 25, 1, 30)),
    # New York spring-forward: 02:15 daily moves to 03:00 EDT = 07:00 UTC
    ("15 2 * * *", "America/New_York", _utc(2026, 3, 7, 12, 0), 0, _utc(2026, 3, 8, 7, 0)),
])
def test_due_at_across_dst_and_backoff(expr: str, tz: str, after: datetime, failures: int,
                                       expected: datetime) -> None:
    assert due_at(expr, tz, after=after, failures=failures) == expected


@pytest.mark.parametrize("failures", [0, 1, 2, 5, 7])
def test_due_at_agrees_with_cron_is_due(failures: int) -> None:
    last = _utc(2026, 3, 29, 0, 47)
    due = due_at("*/20 * * * *", "Europe/Berlin", after=last, failures=failures)
    assert cron.is_due(last, due, "*/20 * * * *", "Europe/Berlin", failures)
    assert not cron.is_due(last, due - timedelta(seconds=1), "*/20 * * * *", "Europe/Berlin", failures)


def test_slot_of_is_the_latest_cron_time_at_or_before() -> None:
    assert slot_of("*/5 * * * *", "UTC", _utc(2026, 1, 5, 10, 7, 30)) == _utc(2026, 1, 5, 10, 5)
    assert slot_of("*/5 * * * *", "UTC", _utc(2026, 1, 5, 10, 5)) == _utc(2026, 1, 5, 10, 5)


# --- firing --------------------------------------------------------------------------------------


def test_fires_within_two_seconds_of_its_due_time(db: sa.Engine, runner_spec) -> None:
    record = runner_spec(sleep=0.1)
    offset = offset_to_minute_boundary(lead_s=3.0)
    clock = offset_clock(offset)
    # Started first with a one-minute recheck: only the service's wake-up can make it fire on time.
    with SchedulerThread(_scheduler(clock=clock)) as t:
        time.sleep(0.3)
        sch = _create(db, "* * * * *", "every_minute", now=clock())
        due = sch.next_run_at
        assert due is not None and due.second == 0 and 2.0 < (due - clock()).total_seconds() < 3.0
        (started,) = wait_for(lambda: list(t.scheduler.started_runs), 10, what="the runner to be spawned")
        late = (started.at - due).total_seconds()
        assert 0 <= late <= 2.0, f"spawned the runner {late:.3f} s after the due time"
        (start,) = wait_for(lambda: [r for r in read_records(record) if r["event"] == "start"], 10,
                            what="the runner to start")
        # The runner's own Python start-up comes on top; generous, as test machines may be loaded.
        assert start["t"] + offset - due.timestamp() <= 6.0
        wait_for(lambda: runs(db, sch.id)[0]["status"] == "success", 10, what="the run to succeed")
    (run,) = runs(db, sch.id)
    assert (run["trigger"], run["backend"], run["scheduled_for"], run["rows_written"]) == (
        "schedule", "local", due, 25)
    row = schedule_row(db, sch.id)
    assert row["next_run_at"] == due + timedelta(minutes=1)
    assert (row["last_run_status"], row["consecutive_failures"]) == ("success", 0)


def test_never_two_runs_of_one_schedule_at_once(db: sa.Engine, runner_spec) -> None:
    record = runner_spec(sleep=2.0)
    now = datetime.now(UTC)
    sch = _create(db, "0 0 1 1 *", "no_overlap", now=now)
    with SchedulerThread(_scheduler()):
        message = schedules.run_now(ANA, sch.id)
        assert "queued" in message.lower()
        wait_for(lambda: read_records(record), 10, what="the manual run to start")
        # The schedule falls due while its manual run is still going.
        with db.begin() as c:
            c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = now() + interval '300 milliseconds' "
                              "WHERE id = :i"), {"i": sch.id})
        with pytest.raises(UserFacingError) as e:
            schedules.run_now(ANA, sch.id)
        assert e.value.kind.value == "conflict" and "already" in e.value.message
        time.sleep(1.0)
        assert len(runs(db, sch.id)) == 1
        wait_for(lambda: len([r for r in read_records(record) if r["event"] == "finish"]) == 1, 10)
        wait_for(lambda: len(runs(db, sch.id)) == 2 and runs(db, sch.id)[1]["status"] == "success", 10,
                 what="the due slot to run after the manual run")
    starts = {r["run_id"]: r["t"] for r in read_records(record) if r["event"] == "start"}
    ends = {r["run_id"]: r["t"] for r in read_records(record) if r["event"] == "finish"}
    first, second = sorted(starts)
    assert starts[second] >= ends[first], "the second run started before the first ended"
    assert [r["trigger"] for r in runs(db, sch.id)] == ["manual", "schedule"]


def test_at_most_max_concurrent_runs(db: sa.Engine, runner_spec) -> None:
    record = runner_spec(sleep=1.0)
    now = datetime.now(UTC)
    qid = seed_query(db)
    ids = [_create(db, "0 0 1 1 *", f"conc_{i}", now=now, query_id=qid).id for i in range(5)]
    with db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = now() - interval '1 minute'"))
    with SchedulerThread(_scheduler(max_concurrent=2)):
        wait_for(lambda: len([r for r in read_records(record) if r["event"] == "finish"]) == 5, 30,
                 what="all five runs")
    events = sorted(((r["t"], 1 if r["event"] == "start" else -1) for r in read_records(record)),
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    assert sorted(r["schedule_id"] for r in read_records(record) if r["event"] == "start") == ids


def test_failed_run_backs_off(db: sa.Engine, runner_spec) -> None:
    runner_spec(outcome="failed", sleep=0.1)
    now = datetime.now(UTC)
    sch = _create(db, "*/5 * * * *", "backoff", now=now)
    with db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = now() WHERE id = :i"), {"i": sch.id})
    with SchedulerThread(_scheduler()) as t:
        wait_for(lambda: schedule_row(db, sch.id)["consecutive_failures"] == 1, 10, what="the failure")
        wait_for(lambda: not t.scheduler.running_children, 5)
    row = schedule_row(db, sch.id)
    finished = runs(db, sch.id)[0]["finished_at"]
    assert row["next_run_at"] == cron.next_run_after("*/5 * * * *", "UTC", finished) + timedelta(minutes=2)
    (view,) = schedules.list_schedules()
    assert (view.next_run_at, view.backoff_delay) == (row["next_run_at"], timedelta(minutes=2))
    assert view.backoff_note == "delayed 2 min after 1 failed run"


def test_a_failed_manual_run_does_not_delay_the_next_run(db: sa.Engine, runner_spec) -> None:
    """Manual runs leave the plan alone: the list must not claim the next run is delayed (it used to say
    "delayed after 1 failed run" whenever the failure count was above zero)."""
    runner_spec(outcome="failed", sleep=0.1)
    sch = _create(db, "0 4 1 1 *", "manual_failure", now=datetime.now(UTC))
    planned = schedule_row(db, sch.id)["next_run_at"]
    schedules.run_now(ANA, sch.id)
    with SchedulerThread(_scheduler()) as t:
        wait_for(lambda: schedule_row(db, sch.id)["consecutive_failures"] == 1, 10, what="the failure")
        wait_for(lambda: not t.scheduler.running_children, 5)
    assert schedule_row(db, sch.id)["next_run_at"] == planned
    (view,) = schedules.list_schedules()
    assert (view.status, view.failures, view.next_run_at) == ("failed", 1, planned)
    assert (view.backoff_delay, view.backoff_note) == (timedelta(0), "")


def test_a_successful_manual_run_ends_the_backoff(db: sa.Engine, runner_spec) -> None:
    runner_spec(outcome="failed", sleep=0.1)
    sch = _create(db, "*/5 * * * *", "backoff_lifted", now=datetime.now(UTC))
    with db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = now() WHERE id = :i"), {"i": sch.id})
    with SchedulerThread(_scheduler()) as t:
        wait_for(lambda: schedule_row(db, sch.id)["consecutive_failures"] == 1, 10, what="the failure")
        wait_for(lambda: not t.scheduler.running_children, 5)
        delayed = schedule_row(db, sch.id)["next_run_at"]
        assert schedules.list_schedules()[0].backoff_note == "delayed 2 min after 1 failed run"
        runner_spec(outcome="success", sleep=0.1)
        schedules.run_now(ANA, sch.id)
        wait_for(lambda: schedule_row(db, sch.id)["consecutive_failures"] == 0, 10, what="the manual success")
        wait_for(lambda: not t.scheduler.running_children, 5)
    planned = schedule_row(db, sch.id)["next_run_at"]
    assert planned < delayed and planned.minute % 5 == 0 and planned.second == 0  # a plain slot again
    (view,) = schedules.list_schedules()
    assert (view.status, view.failures, view.backoff_note) == ("success", 0, "")


def test_runner_that_exits_without_a_result_fails_the_run(db: sa.Engine, runner_spec) -> None:
    runner_spec(outcome="none", exit=3, sleep=0.1)
    sch = _create(db, "0 0 1 1 *", "crashy", now=datetime.now(UTC))
    with SchedulerThread(_scheduler()):
        schedules.run_now(ANA, sch.id)
        wait_for(lambda: runs(db, sch.id)[0]["status"] == "failed", 10, what="the run to be failed")
    (run,) = runs(db, sch.id)
    assert run["error_class"] == "RunnerExited"
    assert "code 3" in run["error_message"]
    assert schedule_row(db, sch.id)["consecutive_failures"] == 1


def test_missing_runner_fails_the_run_with_a_message(db: sa.Engine, runner_spec, caplog) -> None:
    sch = _create(db, "0 0 1 1 *", "no_runner", now=datetime.now(UTC))
    with SchedulerThread(_scheduler(runner_argv=("/nonexistent/runner",))):
        schedules.run_now(ANA, sch.id)
        wait_for(lambda: runs(db, sch.id)[0]["status"] == "failed", 10)
    (run,) = runs(db, sch.id)
    assert run["error_class"] == "RunnerNotStarted" and "could not be started" in run["error_message"]


def test_runner_env_carries_no_provider_secret(db: sa.Engine, runner_spec, monkeypatch) -> None:
    from stackql_inventory.config import get_settings
    from stackql_inventory.services import secrets

    secret_value = "ghp-very-secret-token-value-1234"
    secrets.backend_for(get_settings()).put("stackql-inventory", "github-token", secret_value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-only-the-app-needs-this")
    record = runner_spec(record_env=True)
    sch = _create(db, "0 0 1 1 *", "env_check", now=datetime.now(UTC))
    with SchedulerThread(_scheduler()):
        schedules.run_now(ANA, sch.id)
        (start,) = wait_for(lambda: [r for r in read_records(record) if r["event"] == "start"], 10)
    assert start["env_values"] and secret_value not in start["env_values"]
    assert "sk-ant-only-the-app-needs-this" not in start["env_values"]


# --- restarts ------------------------------------------------------------------------------------


def test_missed_slots_run_once_at_start_up(db: sa.Engine, runner_spec) -> None:
    record = runner_spec(sleep=0.1)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    planned = _create(db, "*/5 * * * *", "missed_planned", now=hour_ago)
    unplanned = _create(db, "*/5 * * * *", "missed_unplanned", now=hour_ago)
    with db.begin() as c:  # inserted by other means: no next run time yet
        c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = NULL, created_at = :t WHERE id = :i"),
                  {"t": hour_ago, "i": unplanned.id})
    with SchedulerThread(_scheduler()) as t:
        wait_for(lambda: len([r for r in read_records(record) if r["event"] == "finish"]) == 2, 10)
        time.sleep(1.0)
        assert t.scheduler.recoveries[0].planned_schedule_ids == [unplanned.id]
    for sch in (planned, unplanned):
        (run,) = runs(db, sch.id)  # once, not once per missed slot (twelve of them)
        assert run["trigger"] == "catchup" and run["status"] == "success"
        assert schedule_row(db, sch.id)["next_run_at"] > datetime.now(UTC)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _insert_run(db: sa.Engine, schedule_id: int, *, status: str, host: str | None, pid: int | None,
                started_at: datetime) -> int:
    with db.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO stackql_app.runs (schedule_id, target_schema, target_table, write_mode, trigger, backend, "
            "status, started_at, runner_host, runner_pid) VALUES (:s, 'stackql_inventory', 't', 'replace', "
            "'schedule', 'local', :st, :at, :h, :p) RETURNING id"),
            {"s": schedule_id, "st": status, "at": started_at, "h": host, "p": pid}).scalar()


def test_crashed_runs_are_marked_failed_at_start_up(db: sa.Engine, runner_spec) -> None:
    now = datetime.now(UTC)
    qid = seed_query(db)
    ids = [_create(db, "0 0 1 1 *", f"crash_{i}", now=now, query_id=qid).id for i in range(6)]
    reused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _insert_run(db, ids[0], status="running", host=HOST, pid=_dead_pid(),
                           started_at=now - timedelta(minutes=3))
        alive = _insert_run(db, ids[1], status="running", host=HOST, pid=os.getpid(), started_at=now)
        # pid alive, but its process started long after the run did: the pid was reused
        reused_run = _insert_run(db, ids[2], status="running", host=HOST, pid=reused.pid,
                                 started_at=now - timedelta(minutes=10))
        elsewhere = _insert_run(db, ids[3], status="running", host="other-host", pid=1, started_at=now)
        stale = _insert_run(db, ids[4], status="running", host="other-host", pid=1,
                            started_at=now - timedelta(hours=7))
        claimed = _insert_run(db, ids[5], status="queued", host=HOST, pid=_dead_pid(), started_at=now)
        with SchedulerThread(_scheduler()) as t:
            wait_for(lambda: t.scheduler.recoveries, 10, what="recovery")
        failed = sorted(t.scheduler.recoveries[0].failed_run_ids)
        assert failed == sorted([dead, reused_run, stale, claimed])
        status = {r["id"]: r for r in runs(db)}
        assert status[alive]["status"] == status[elsewhere]["status"] == "running"
        for run_id in failed:
            assert status[run_id]["status"] == "failed" and status[run_id]["error_class"] == "RunnerLost"
            assert status[run_id]["finished_at"] is not None
        assert "ended without recording a result" in status[dead]["error_message"]
        assert "taken for lost" in status[stale]["error_message"]
        assert schedule_row(db, ids[0])["consecutive_failures"] == 1
        assert schedule_row(db, ids[0])["last_run_status"] == "failed"
        assert schedule_row(db, ids[1])["consecutive_failures"] == 0
    finally:
        reused.kill()
        reused.wait()


def test_runner_alive_checks() -> None:
    me = datetime.now(UTC)
    assert runner_alive(os.getpid(), me)
    assert not runner_alive(_dead_pid(), me)
    assert not runner_alive(None, me)


def test_stopping_the_app_stops_its_runners(db: sa.Engine, runner_spec) -> None:
    record = runner_spec(sleep=60)
    sch = _create(db, "0 0 1 1 *", "long_run", now=datetime.now(UTC))
    t = SchedulerThread(_scheduler()).start()
    schedules.run_now(ANA, sch.id)
    wait_for(lambda: read_records(record), 10)
    started = time.monotonic()
    t.stop(grace_s=3)
    assert time.monotonic() - started < 5
    (run,) = runs(db, sch.id)
    assert (run["status"], run["error_class"]) == ("failed", "AppShutdown")


# --- several processes ---------------------------------------------------------------------------


def test_two_schedulers_on_one_database_fire_each_slot_once(db: sa.Engine, runner_spec, db_uri: str) -> None:
    record = runner_spec(sleep=0.3)
    offset = offset_to_minute_boundary(lead_s=6.0)
    clock = offset_clock(offset)
    qid = seed_query(db)
    ids = [_create(db, "* * * * *", f"twice_{i}", now=clock(), query_id=qid).id for i in range(8)]
    other = subprocess.Popen(
        [sys.executable, "-m", "tests.support.scheduling", "scheduler", "--seconds", "11",
         "--clock-offset", str(offset)],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": db_uri}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        with SchedulerThread(_scheduler(clock=clock, max_concurrent=10, recheck_s=1.0)) as mine:
            out, err = other.communicate(timeout=60)
            assert other.returncode == 0, err[-3000:]
            wait_for(lambda: not mine.scheduler.running_children, 10)
    finally:
        if other.poll() is None:
            other.kill()
    theirs = json.loads(out.strip().splitlines()[-1])["started"]
    ours = [s.run_id for s in mine.scheduler.started_runs]
    # Both woke for the same slot and raced for it; whichever won, each schedule ran exactly once.
    starts = [r for r in read_records(record) if r["event"] == "start"]
    assert sorted(r["schedule_id"] for r in starts) == ids, "each schedule fired exactly once for the slot"
    assert sorted(ours + theirs) == sorted(r["run_id"] for r in starts)


def test_a_slot_cannot_be_recorded_twice(db: sa.Engine) -> None:
    sch = _create(db, "*/5 * * * *", "slot_unique", now=datetime.now(UTC))
    insert = sa.text(
        "INSERT INTO stackql_app.runs (schedule_id, target_schema, target_table, write_mode, trigger, status, "
        "scheduled_for) VALUES (:s, 'stackql_inventory', 't', 'replace', 'schedule', 'success', :slot)")
    slot = _utc(2026, 1, 5, 10, 5)
    with db.begin() as c:
        c.execute(insert, {"s": sch.id, "slot": slot})
    with pytest.raises(sa.exc.IntegrityError), db.begin() as c:
        c.execute(insert, {"s": sch.id, "slot": slot})


# --- idle cost -----------------------------------------------------------------------------------


def test_a_thousand_idle_schedules_cost_almost_no_cpu(db: sa.Engine, runner_spec) -> None:
    qid = seed_query(db)
    now = datetime.now(UTC)
    exprs = ["0 3 * * *", "30 4 * * 1-5", "0 0 1 * *", "15 6 * * 0", "0 */6 * * *"]
    with db.begin() as c:
        c.execute(sa.text(
            "INSERT INTO stackql_app.schedules (query_id, cron_expression, timezone, target_table, next_run_at) "
            "VALUES (:q, :e, 'UTC', :t, :n)"),
            [{"q": qid, "e": exprs[i % 5], "t": f"idle_{i:04d}",
              "n": due_at(exprs[i % 5], "UTC", after=now + timedelta(minutes=10), failures=0)}
             for i in range(1000)])
    with SchedulerThread(_scheduler(recheck_s=2.0)) as t:
        time.sleep(1.0)  # start-up and recovery
        cpu_before, wall_before = time.process_time(), time.monotonic()
        time.sleep(6.0)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        assert t.scheduler.started_runs == []
    # Three plan re-reads in six seconds; everything else is sleeping.
    assert cpu < 0.25, f"{cpu:.3f} CPU seconds in {wall:.1f} s idle"


# --- the app's lifespan task ---------------------------------------------------------------------


def test_lifespan_recovers_and_runs_the_scheduler_for_the_local_backend(db: sa.Engine, runner_spec) -> None:
    import asyncio

    from stackql_inventory import lifespan
    from stackql_inventory.services import scheduler

    sch = _create(db, "0 0 1 1 *", "lifespan", now=datetime.now(UTC))
    crashed = _insert_run(db, sch.id, status="running", host=HOST, pid=_dead_pid(),
                          started_at=datetime.now(UTC) - timedelta(minutes=1))

    async def main() -> None:
        async with lifespan.local_scheduler():
            deadline = time.monotonic() + 20
            while not (scheduler.current() and scheduler.current().recoveries):
                assert time.monotonic() < deadline, "the scheduler did not start and recover"
                await asyncio.sleep(0.05)
            assert scheduler.current().recoveries[0].failed_run_ids == [crashed]
        assert scheduler.current() is None, "leaving the lifespan stops the scheduler"

    asyncio.run(main())
    (run,) = runs(db, sch.id)
    assert (run["status"], run["error_class"]) == ("failed", "RunnerLost")


@pytest.mark.parametrize("env", [{"STACKQL_INVENTORY_JOBS_BACKEND": "databricks"},
                                 {"STACKQL_INVENTORY_SCHEDULER": "false"}])
def test_lifespan_runs_no_scheduler_otherwise(db: sa.Engine, monkeypatch, env: dict[str, str]) -> None:
    import asyncio

    from stackql_inventory import lifespan
    from stackql_inventory.config import get_settings
    from stackql_inventory.services import scheduler

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    async def main() -> None:
        async with lifespan.local_scheduler():
            await asyncio.sleep(0.2)
            assert scheduler.current() is None

    try:
        asyncio.run(main())
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
