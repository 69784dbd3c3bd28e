"""Entry point of every inventory job on Databricks: `spark_python_task.python_file` points here.

The bundle syncs the repository to `<root_path>/files`; this file is `files/infra/runner/job_entry.py`.
It puts `files/` on `sys.path` (so `runner` and `stackql_inventory.{config,db,services}` import without
installing anything beyond `requirements.txt` beside it), takes the job's non-secret settings from
`--env NAME=VALUE` parameters (serverless tasks have no environment variables of their own), and runs
`python -m runner` with the remaining arguments.

    job_entry.py --env LAKEBASE_ENDPOINT=projects/p/branches/production/endpoints/primary \
                 --env PGDATABASE=databricks_postgres -- --schedule-id 42 --backend-run-id {{job.run_id}}

Credentials never travel as parameters: the Databricks SDK authenticates as the job's run-as identity
(the app's service principal), which also mints the Lakebase tokens and reads provider secrets.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
from pathlib import Path

# Settings a job may receive; anything that looks like a credential is refused.
_ALLOWED = re.compile(r"^(PG(HOST|PORT|DATABASE|USER|SSLMODE|APPNAME)|LAKEBASE_(ENDPOINT|INSTANCE)|STACKQL_INVENTORY_[A-Z0-9_]+"
                      r"|STACKQL_DOWNLOAD_DIR)$")
_CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", re.IGNORECASE)
# Names about secrets rather than holding one (services/jobs_databricks.runner_settings sends them).
_NOT_A_CREDENTIAL = {"STACKQL_INVENTORY_SECRETS_BACKEND", "STACKQL_INVENTORY_SECRET_SCOPE"}


def files_root(entry: str) -> Path:
    """The synced bundle files: two levels above infra/runner/."""
    return Path(entry).resolve().parents[2]


def split_args(argv: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """(`--env` settings, module to run, its arguments) from this script's arguments."""
    settings: dict[str, str] = {}
    module = "runner"
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1:])
            break
        if arg in ("--env", "--module") and i + 1 < len(argv):
            value = argv[i + 1]
            if arg == "--module":
                module = value
            else:
                name, sep, setting = value.partition("=")
                if not sep or not _ALLOWED.match(name) or (_CREDENTIAL.search(name) and name not in _NOT_A_CREDENTIAL):
                    raise SystemExit(f"job_entry: refusing --env {name!r}: only non-secret app settings "
                                     "(PG*, LAKEBASE_*, STACKQL_INVENTORY_*) may be job parameters.")
                settings[name] = setting
            i += 2
            continue
        rest.append(arg)
        i += 1
    return settings, module, rest


def main(argv: list[str]) -> None:
    settings, module, rest = split_args(argv[1:])
    root = files_root(argv[0] if argv and argv[0] else __file__)
    sys.path.insert(0, str(root))
    os.environ.update(settings)  # read by stackql_inventory.config, the one module that reads the environment
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main([globals().get("__file__") or sys.argv[0], *sys.argv[1:]])
