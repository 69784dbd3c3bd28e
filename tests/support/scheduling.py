"""Scheduling test support: a stand-in runner process, a scheduler on its own thread or process, seed data.

The stand-in runner honours the runner's CLI contract (`--schedule-id N --trigger T --run-id R`): it takes
over the queued run row, records its start in a JSON-lines file, sleeps, then records the outcome on the
run and the schedule as the real runner does. Its behaviour comes from the JSON in `$SCHEDULING_TEST_RUNNER`:
`{"record": path, "sleep": s, "outcome": "success"|"failed"|"none", "exit": code}`.

    python -m tests.support.scheduling runner --schedule-id 1 --trigger schedule --run-id 7
    python -m tests.support.scheduling scheduler --seconds 8 [--clock-offset 12.5] [--max-concurrent 10] [--recheck 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

RUNNER_ENV = "SCHEDULING_TEST_RUNNER"
STAND_IN_RUNNER = (sys.executable, "-m", "tests.support.scheduling", "runner")
ROOT = Path(__file__).resolve().parents[2]
BULK_QUERY = "SELECT * FROM synthetic.bulk.items WHERE count = 25"


# --- seed data -----------------------------------------------------------------------------------


def seed_query(engine: sa.Engine, name: str = "bulk items", query_text: str = BULK_QUERY,
               created_by: str = "ana") -> int:
    """Insert a saved query; returns its id."""
    with engine.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
            "VALUES (:n, :t, 'synthetic', :u) RETURNING id"), {"n": name, "t": query_text, "u": created_by}).scalar()


def runs(engine: sa.Engine, schedule_id: int | None = None) -> list[dict[str, Any]]:
    """Run rows (oldest first) as dicts."""
    where = "" if schedule_id is None else "WHERE schedule_id = :s"
    with engine.connect() as c:
        rows = c.execute(sa.text(f"SELECT * FROM stackql_app.runs {where} ORDER BY id"), {"s": schedule_id})
        return [dict(r._mapping) for r in rows]


def schedule_row(engine: sa.Engine, schedule_id: int) -> dict[str, Any]:
    with engine.connect() as c:
        return dict(c.execute(sa.text("SELECT * FROM stackql_app.schedules WHERE id = :i"),
                              {"i": schedule_id}).one()._mapping)


def read_records(path: Path) -> list[dict[str, Any]]:
    """What the stand-in runner recorded (one dict per start or finish)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def offset_clock(offset_s: float) -> Callable[[], datetime]:
    """A clock running `offset_s` seconds ahead of the real one (same pace)."""
    delta = timedelta(seconds=offset_s)
    return lambda: datetime.now(UTC) + delta


def offset_to_minute_boundary(lead_s: float) -> float:
    """An offset for `offset_clock` that puts a whole minute `lead_s` seconds from now."""
    now = time.time()
    boundary = (int(now // 60) + 2) * 60
    return boundary - lead_s - now


# --- a scheduler on its own event loop ----------------------------------------------------------


class SchedulerThread:
    """Runs a `Scheduler` on a private event loop in a thread (tests are synchronous)."""

    def __init__(self, scheduler):  # noqa: ANN001 - stackql_inventory.services.scheduler.Scheduler
        self.scheduler = scheduler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="test-scheduler", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.scheduler.run())
        self.task.add_done_callback(self._done)
        self.loop.run_forever()

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.error = task.exception()

    def start(self) -> SchedulerThread:
        self.thread.start()
        wait_for(lambda: self.scheduler._event is not None, 10, what="the scheduler loop")
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        if self.thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.scheduler.stop(grace_s), self.loop)
            future.result(timeout=3 * grace_s + 10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(3 * grace_s + 10)
        self.loop.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> SchedulerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- processes -----------------------------------------------------------------------------------


def _engine() -> sa.Engine:
    return sa.create_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1))


def _record(path: str | None, **fields: Any) -> None:
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


def runner_main(argv: list[str]) -> int:
    """The stand-in runner (see the module docstring)."""
    p = argparse.ArgumentParser()
    p.add_argument("--schedule-id", type=int, required=True)
    p.add_argument("--trigger", default="manual")
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--backend-run-id")
    args = p.parse_args(argv)
    spec = json.loads(os.environ.get(RUNNER_ENV, "{}"))
    started = time.time()
    _record(spec.get("record"), event="start", run_id=args.run_id, schedule_id=args.schedule_id,
            trigger=args.trigger, t=started, pid=os.getpid(),
            env_values=sorted(set(os.environ.values())) if spec.get("record_env") else None)
    engine = _engine()
    with engine.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.runs SET status = 'running', runner_pid = :p, runner_host = :h, "
                          "started_at = now() WHERE id = :r AND status = 'queued'"),
                  {"p": os.getpid(), "h": socket.gethostname(), "r": args.run_id})
    time.sleep(float(spec.get("sleep", 0.2)))
    outcome = spec.get("outcome", "success")
    if outcome != "none":
        ok = outcome == "success"
        with engine.begin() as c:
            c.execute(sa.text(
                "UPDATE stackql_app.runs SET status = :s, finished_at = now(), rows_written = :rows, "
                "duration_s = :d, error_class = :ec, error_message = :em WHERE id = :r"),
                {"s": outcome, "rows": 25 if ok else None, "d": time.time() - started,
                 "ec": None if ok else "QueryError", "em": None if ok else "synthetic failure", "r": args.run_id})
            c.execute(sa.text(
                "UPDATE stackql_app.schedules SET last_run_at = now(), last_run_status = :s, "
                "consecutive_failures = CASE WHEN :ok THEN 0 ELSE consecutive_failures + 1 END WHERE id = :i"),
                {"s": outcome, "ok": ok, "i": args.schedule_id})
    engine.dispose()
    _record(spec.get("record"), event="finish", run_id=args.run_id, schedule_id=args.schedule_id, t=time.time())
    return int(spec.get("exit", 0))


def scheduler_main(argv: list[str]) -> int:
    """Run a scheduler against $DATABASE_URL for `--seconds`, with the stand-in runner."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--clock-offset", type=float, default=0.0)
    p.add_argument("--max-concurrent", type=int, default=10)
    p.add_argument("--recheck", type=float, default=1.0)
    args = p.parse_args(argv)
    from stackql_inventory.db import engine as db_engine
    from stackql_inventory.services.scheduler import Scheduler

    db_engine.set_engine(_engine())
    scheduler = Scheduler(max_concurrent=args.max_concurrent, runner_argv=STAND_IN_RUNNER, recheck_s=args.recheck,
                          clock=offset_clock(args.clock_offset))

    async def main() -> None:
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(args.seconds)
        await scheduler.stop()
        await task

    asyncio.run(main())
    print(json.dumps({"started": [s.run_id for s in scheduler.started_runs],
                      "spawned_at": {str(s.claim.schedule_id): s.at.timestamp() for s in scheduler.started_runs}}),
          flush=True)
    return 0


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    sys.exit({"runner": runner_main, "scheduler": scheduler_main}[command](rest))
