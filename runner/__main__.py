"""`python -m runner`: run a schedule (or a one-off query) into its inventory table and exit with its outcome.

    python -m runner --schedule-id N [--trigger schedule|manual|catchup] [--backend-run-id ID] [--run-id N]
    python -m runner --query-id N --target-table T [--target-schema S] [--write-mode replace|append|history]
                     [--key-columns a,b]

Exit codes: 0 success; 1 failed (the ledger row says why); 2 bad arguments or nothing to run
(unknown schedule/query, --run-id not queued); 3 skipped (target busy, a newer run already wrote
it, schedule paused; reason recorded); 4 cancelled (SIGTERM/SIGINT; nothing written); 5 the run
could not be recorded (database unreachable). Logs: key=value lines on stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from stackql_inventory import config
from stackql_inventory.db.models import RUN_TRIGGERS, WRITE_MODES

from runner import logfmt
from runner.run import DEFAULT_TIMEOUT_S, EXIT_USAGE, RunRequest, execute, request_stop


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 as well; keep the message one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"runner: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def parse_args(argv: Sequence[str] | None = None) -> RunRequest:
    """The RunRequest for a command line (exits with code 2 on bad arguments)."""
    p = _Parser(prog="python -m runner", description="Run a StackQL schedule into its inventory table.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--schedule-id", type=_positive_int, help="run this schedule")
    what.add_argument("--query-id", type=_positive_int, help="one-off: run this saved query (needs --target-table)")
    p.add_argument("--trigger", choices=RUN_TRIGGERS, help="why it runs (default: schedule, or adhoc for one-offs)")
    p.add_argument("--backend-run-id", help="the job backend's id of this run (e.g. a Databricks job run id)")
    p.add_argument("--backend", choices=[b.value for b in config.Backend],
                   help="where it runs (default: STACKQL_INVENTORY_JOBS_BACKEND)")
    p.add_argument("--requested-by", default="",
                   help="who asked for the run (recorded as its created_by; default: scheduler or the local user)")
    p.add_argument("--run-id", type=_positive_int, help="take over this queued row of stackql_app.runs")
    p.add_argument("--target-table", help="one-off: the table in the target schema")
    p.add_argument("--target-schema", default="stackql_inventory", help="one-off: default stackql_inventory")
    p.add_argument("--write-mode", choices=WRITE_MODES, default="replace", help="one-off: default replace")
    p.add_argument("--key-columns", default="", help="one-off, history mode: comma-separated key columns")
    p.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds the stackql query may run (default {DEFAULT_TIMEOUT_S:g})")
    a = p.parse_args(argv)
    if a.query_id is not None and not a.target_table:
        p.error("--query-id needs --target-table")
    if a.schedule_id is not None and (a.target_table or a.key_columns or a.write_mode != "replace"
                                      or a.target_schema != "stackql_inventory"):
        p.error("--target-table/--target-schema/--write-mode/--key-columns are for one-off runs (--query-id); "
                "a schedule has its own")
    if a.run_id is not None and a.schedule_id is None:
        p.error("--run-id takes over a scheduled run: give --schedule-id too")
    keys = tuple(k.strip() for k in a.key_columns.split(",") if k.strip())
    return RunRequest(
        schedule_id=a.schedule_id, query_id=a.query_id, target_table=a.target_table, target_schema=a.target_schema,
        write_mode=a.write_mode, key_columns=keys, trigger=a.trigger, backend=a.backend,
        backend_run_id=a.backend_run_id, run_id=a.run_id, created_by=a.requested_by.strip()[:200],
        timeout_s=a.timeout)


def _on_signal(signum: int, frame: object) -> None:
    logging.getLogger("runner").warning("event=stop_requested %s", logfmt.kv(signal=signal.Signals(signum).name))
    request_stop()


def main(argv: Sequence[str] | None = None) -> int:
    request = parse_args(argv)
    logfmt.configure(config.get_settings().log_level)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return execute(request).exit_code


if __name__ == "__main__":
    sys.exit(main())
