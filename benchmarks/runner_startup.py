"""Runner start-up: how long `python -m runner` takes before and around its real work.

Measured in one process run, median of N (default 5):

- help: `python -m runner --help`, spawn to exit (interpreter start + every import the CLI needs);
  also the total of `python -X importtime -m runner --help` and its five heaviest top-level imports
  (and the same for a run: imports done while it runs, such as pystackql's, count too).
- run: a real local one-off run (`python -m runner --query-id Q --target-table T`) of a small query
  (100 rows from the stackql stand-in) into a throwaway embedded PostgreSQL 16, spawn to exit,
  next to the run's own `duration_s` as its ledger row records it (ledger row opened → closed).
  The difference is what the scheduler waits for beyond the run itself: interpreter start,
  imports, settings, and process exit.

Last line (machine-readable): `help_s=<median> run_spawn_to_exit_s=<median> run_recorded_s=<median>`.

Run: `.venv/bin/python benchmarks/runner_startup.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = ("SELECT item_id, name, category, quantity, price, created_at, attributes "
         "FROM synthetic.bulk.items WHERE count = 100")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "LAKEBASE_", "DATABRICKS_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def import_profile(args: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """(total import seconds, heaviest top-level imports) of `python -X importtime -m runner <args>`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    top: list[tuple[float, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if m and not m.group(2):  # top level: what the interpreter and the entry point import
            top.append((int(m.group(1)) / 1e6, m.group(3)))
    total = sum(s for s, _ in top)
    return total, sorted(top, reverse=True)[:5]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"cpus={os.cpu_count()} load(1/5/15 min)={' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    import pgserver

    from stackql_inventory.db import migrate
    from tests.fakes.install import install_fake_stackql

    work = Path(tempfile.mkdtemp(prefix="runner-startup-"))
    server = pgserver.get_server(work / "pg", cleanup_mode="delete")
    try:
        uri = server.get_uri()
        db = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg2://", 1))
        migrate.upgrade(db)
        with db.begin() as c:
            query_id = c.execute(sa.text(
                "INSERT INTO stackql_app.queries (name, query_text, provider, created_by, created_at, updated_at) "
                "VALUES ('startup bench', :q, 'synthetic', 'bench', now(), now()) RETURNING id"), {"q": QUERY}).scalar()
        download_dir = work / "stackql-bin"
        install_fake_stackql(download_dir)
        env = child_env({"DATABASE_URL": uri, "STACKQL_INVENTORY_DATA_DIR": str(work / "data"),
                         "STACKQL_DOWNLOAD_DIR": str(download_dir)})

        help_s, run_s, recorded_s = [], [], []
        timed([sys.executable, "-m", "runner", "--help"], env)  # warm the page cache and bytecode
        for r in range(args.rounds):
            t, proc = timed([sys.executable, "-m", "runner", "--help"], env)
            assert proc.returncode == 0, proc.stderr
            help_s.append(t)
            t, proc = timed([sys.executable, "-m", "runner", "--query-id", str(query_id), "--target-table",
                             "startup_bench"], env)
            assert proc.returncode == 0, proc.stderr
            run_s.append(t)
            with db.connect() as c:
                recorded_s.append(float(c.execute(sa.text(
                    "SELECT duration_s FROM stackql_app.runs ORDER BY id DESC LIMIT 1")).scalar()))
            print(f"round {r + 1}: help={help_s[-1]:.3f}s run spawn-to-exit={run_s[-1]:.3f}s "
                  f"recorded={recorded_s[-1]:.3f}s", flush=True)

        print()
        for what, run_args in (("--help", ["--help"]),
                               ("a one-off run", ["--query-id", str(query_id), "--target-table", "startup_bench"])):
            total, top = import_profile(run_args, env)
            print(f"imports of `python -m runner` for {what}: {total:.3f}s in all; heaviest: "
                  + ", ".join(f"{name} {s:.3f}s" for s, name in top))
        med = {k: statistics.median(v) for k, v in (("help", help_s), ("run", run_s), ("recorded", recorded_s))}
        print(f"--help spawn-to-exit median {med['help']:.3f}s; one-off run spawn-to-exit median {med['run']:.3f}s, "
              f"of which recorded run time {med['recorded']:.3f}s (outside it: {med['run'] - med['recorded']:.3f}s)")
        print(f"load at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print(f"help_s={med['help']:.3f} run_spawn_to_exit_s={med['run']:.3f} run_recorded_s={med['recorded']:.3f}")
        db.dispose()
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
