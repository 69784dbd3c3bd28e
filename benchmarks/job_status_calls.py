"""Benchmark: Jobs API calls made by the Schedules page for job-backed schedules, without and with the
status cache of services/jobs_databricks.py.

Run from the repository root:  .venv/bin/python benchmarks/job_status_calls.py [--schedules 100] [--seconds 60]

While a run is going the page re-lists every schedule every 1.5 s, in every open tab; each job-backed schedule's
status is a `jobs/get` plus a `runs/list`. Two tabs poll for `--seconds` against the fake workspace
(tests/fakes, real databricks-sdk), once with the default TTLs (from a cold cache) and once with the cache off.
No database is needed (the jobs have no runs yet: all idle, the common case; a job with a run going is asked
every STATUS_TTL_S). The last line is machine-readable:
`uncached_per_min=<n> cached_per_min=<n> ratio=<uncached/cached>`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackql_inventory.config import Settings  # noqa: E402
from stackql_inventory.db.models import Schedule  # noqa: E402
from stackql_inventory.services.jobs_databricks import (  # noqa: E402
    IDLE_STATUS_TTL_S, STATUS_TTL_S, DatabricksJobs)
from tests.fakes.databricks_api import FakeDatabricks  # noqa: E402

POLL_S = 1.5  # pages/schedules.py POLL_ACTIVE_S
TABS = 2


def _status_calls(fake: FakeDatabricks) -> int:
    return len(fake.requests_to("/api/2.2/jobs/get")) + len(fake.requests_to("/api/2.2/jobs/runs/list"))


def _poll(backend: DatabricksJobs, schedules: list[Schedule], seconds: float) -> None:
    """TABS pollers listing every schedule's status every POLL_S seconds, for `seconds`."""
    def tab() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            backend.statuses(schedules)
            time.sleep(POLL_S)
    threads = [threading.Thread(target=tab) for _ in range(TABS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="polling time per phase")
    args = parser.parse_args()
    with FakeDatabricks() as fake:
        client = fake.client()
        # As on Databricks: Lakebase and the secret scope (a job could reach neither an embedded database
        # nor local secret files, and the backend refuses to create one).
        settings = Settings(STACKQL_INVENTORY_JOBS_BACKEND="databricks", STACKQL_INVENTORY_SECRETS_BACKEND="databricks",
                            LAKEBASE_ENDPOINT="projects/inv/branches/production/endpoints/primary",
                            STACKQL_INVENTORY_RUNNER_FILE="/Workspace/Shared/stackql-inventory/runner.py")
        creator = DatabricksJobs(settings, client)
        schedules = []
        for i in range(args.schedules):
            schedule = Schedule(id=i + 1, query_id=1, cron_expression="0 * * * *", target_table=f"t{i}")
            schedule.job_id = creator.create(schedule, f"query {i}")  # the job body the app itself sends
            schedules.append(schedule)
        per_min = {}
        # Cached first, from a cold cache (the cache is process-wide: the uncached phase would warm it).
        for label, ttl, idle_ttl in (("cached", STATUS_TTL_S, IDLE_STATUS_TTL_S), ("uncached", 0.0, 0.0)):
            before = _status_calls(fake)
            _poll(DatabricksJobs(settings, client, status_ttl_s=ttl, idle_status_ttl_s=idle_ttl), schedules,
                  args.seconds)
            per_min[label] = (_status_calls(fake) - before) * 60 / args.seconds
            print(f"{label:9s} TTL {ttl:.0f} s running / {idle_ttl:.0f} s idle: {per_min[label]:,.0f} Jobs API "
                  f"calls per minute ({args.schedules} schedules, {TABS} tabs polling every {POLL_S} s)")
    ratio = per_min["uncached"] / max(per_min["cached"], 1)
    print(f"uncached_per_min={per_min['uncached']:.0f} cached_per_min={per_min['cached']:.0f} ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
