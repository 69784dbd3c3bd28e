"""Idle cost of the local scheduler with 1,000 active schedules, and how late it fires among them.

Idle CPU: a scheduler process (`python -m tests.support.scheduling scheduler`, the real `Scheduler` with its
default 15 s re-check) runs over a database holding 1,000 active schedules created through the schedules
service, none due during the measurement; its own CPU time (user + system, psutil) is sampled over
WINDOWS windows of WINDOW_S seconds. Baseline, measured at the same time: the same scheduler over an empty
database. Lateness: 5 of the 1,000 schedules are then made due ~20 s ahead by another process (so the
scheduler learns of them at its next re-check, not by a wake-up); lateness = when the scheduler spawned the
runner, and when the stand-in runner's first line ran (its Python start-up included), minus the due time.

Last line: `schedules=1000 idle_cpu_ms_per_min=<mean> baseline_cpu_ms_per_min=<mean>
spawn_lateness_ms_median=<ms> spawn_lateness_ms_max=<ms> runner_start_lateness_ms_median=<ms>` (one line).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCHEDULES = 1000
WARMUP_S = 6.0
WINDOWS = 5
WINDOW_S = 10.0
DUE_AHEAD_S = 20.0
DUE_COUNT = 5


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
    os.environ["STACKQL_INVENTORY_DATA_DIR"] = str(work / "data")
    from stackql_inventory.db import engine as db_engine
    from stackql_inventory.services import schedules
    from stackql_inventory.services.identity import Identity
    from tests.support.postgres import PgHarness
    from tests.support.scheduling import RUNNER_ENV, read_records, seed_query

    pg = PgHarness(work / "pg").start()
    try:
        busy_db, empty_db = pg.create_database(), pg.create_database()
        engine = sa.create_engine(pg.url(busy_db))
        db_engine.set_engine(engine)
        qid = seed_query(engine)
        who = Identity(user="bench", display_name="bench", source="local")
        exprs = ["0 3 * * *", "30 4 * * 1-5", "0 0 1 * *", "15 6 * * 0", "0 */6 * * *"]
        zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
        started = time.perf_counter()
        for i in range(SCHEDULES):
            form = schedules.ScheduleForm(qid, exprs[i % len(exprs)], zones[i % len(zones)], f"bench_{i:04d}")
            schedules.create_schedule(who, form)
        create_ms = (time.perf_counter() - started) * 1000 / SCHEDULES
        with engine.connect() as c:
            soonest = c.execute(sa.text("SELECT min(next_run_at) FROM stackql_app.schedules")).scalar()
        measure_s = WARMUP_S + WINDOWS * WINDOW_S
        assert soonest > datetime.now(UTC) + timedelta(seconds=measure_s + 60), "a schedule would fire"

        record = work / "records.jsonl"
        total_s = measure_s + DUE_AHEAD_S + 20
        procs = {}
        for name, database in (("busy", busy_db), ("empty", empty_db)):
            env = {**os.environ, "DATABASE_URL": pg.uri(database),
                   RUNNER_ENV: json.dumps({"record": str(record), "sleep": 0.1})}
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "tests.support.scheduling", "scheduler", "--seconds", str(total_s),
                 "--recheck", "15"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(WARMUP_S)
        cpu = {name: [] for name in procs}
        handles = {name: psutil.Process(p.pid) for name, p in procs.items()}
        last = {name: sum(h.cpu_times()[:2]) for name, h in handles.items()}
        for _ in range(WINDOWS):
            time.sleep(WINDOW_S)
            for name, h in handles.items():
                now_cpu = sum(h.cpu_times()[:2])
                cpu[name].append((now_cpu - last[name]) * 1000 * 60 / WINDOW_S)  # CPU ms per minute
                last[name] = now_cpu

        due = datetime.now(UTC) + timedelta(seconds=DUE_AHEAD_S)
        with engine.begin() as c:
            ids = c.execute(sa.text("SELECT id FROM stackql_app.schedules ORDER BY id LIMIT :n"),
                            {"n": DUE_COUNT}).scalars().all()
            c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = :d WHERE id = ANY(:ids)"),
                      {"d": due, "ids": list(ids)})
        outputs = {}
        for name, p in procs.items():
            out, err = p.communicate(timeout=total_s + 60)
            if p.returncode != 0:
                raise SystemExit(f"scheduler exited with {p.returncode}:\n{err[-3000:]}")
            outputs[name] = json.loads(out.strip().splitlines()[-1])
        starts = [r for r in read_records(record) if r["event"] == "start"]
        assert sorted(r["schedule_id"] for r in starts) == sorted(ids), starts
        spawn_late = [(t - due.timestamp()) * 1000 for t in outputs["busy"]["spawned_at"].values()]
        start_late = [(r["t"] - due.timestamp()) * 1000 for r in starts]
    finally:
        db_engine.set_engine(None)
        pg.stop()

    # psutil counts CPU in 10 ms ticks: per-window figures are coarse, the whole idle period is not.
    idle = {name: sum(values) / len(values) for name, values in cpu.items()}
    for name in cpu:
        print(f"{name:>5} scheduler: CPU ms per minute, per {WINDOW_S:.0f} s window: "
              f"{', '.join(f'{v:.0f}' for v in cpu[name])}; over all {WINDOWS * WINDOW_S:.0f} s: {idle[name]:.1f}")
    print(f"creating a schedule through the schedules service: {create_ms:.1f} ms each (mean of {SCHEDULES})")
    print(f"{len(starts)} schedules due among {SCHEDULES}: runner spawned "
          f"{', '.join(f'{v:.0f}' for v in sorted(spawn_late))} ms after the due time; stand-in runner running "
          f"{', '.join(f'{v:.0f}' for v in sorted(start_late))} ms after (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"schedules={SCHEDULES} idle_cpu_ms_per_min={idle['busy']:.1f} baseline_cpu_ms_per_min={idle['empty']:.1f} "
          f"spawn_lateness_ms_median={statistics.median(spawn_late):.0f} "
          f"spawn_lateness_ms_max={max(spawn_late):.0f} runner_start_lateness_ms_median="
          f"{statistics.median(start_late):.0f}")


if __name__ == "__main__":
    main()
