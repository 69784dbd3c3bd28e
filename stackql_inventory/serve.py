"""Production launcher: start the embedded database, migrate, then serve UI + websocket on one port.

`python -m stackql_inventory.serve [--port N] [--dev]` — what `make run` (and app.yaml) executes.
Ctrl+C or SIGTERM stops the app and the embedded PostgreSQL it started, within 15 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from stackql_inventory.config import get_settings, process_env

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("stackql_inventory.serve")

# Seconds the app gets to stop after SIGTERM before it is killed (Databricks allows 15 in all).
STOP_GRACE_S = 10


def find_bun() -> Path | None:
    """bun from the npm registry (`make` installs it under .tools), else on PATH."""
    candidates = [
        ROOT / ".tools" / "node_modules" / "bun" / "bin" / "bun.exe",
        ROOT / "node_modules" / "bun" / "bin" / "bun.exe",
    ]
    for c in candidates:
        if c.exists():
            return c
    found = shutil.which("bun")
    return Path(found) if found else None


def reflex_env() -> dict[str, str]:
    """The environment for `reflex run`: no telemetry, no version checks, our bun."""
    env = process_env()
    env["REFLEX_TELEMETRY_ENABLED"] = "false"
    env["REFLEX_CHECK_LATEST_VERSION"] = "false"
    env.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    bun = find_bun()
    if bun is not None:
        env["REFLEX_BUN_PATH"] = str(bun)
        env["PATH"] = f"{bun.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def prepare_database() -> None:
    """Start the embedded PostgreSQL if configured, then migrate; failures leave the UI banner to explain."""
    from stackql_inventory.db import migrate
    from stackql_inventory.services.errors import UserFacingError

    try:
        migrate.upgrade()
    except UserFacingError as e:
        log.warning("database not ready, starting the app anyway: %s", e.message)


def reflex_command(port: int, dev: bool) -> list[str]:
    if dev:
        return [sys.executable, "-m", "reflex", "run", "--env", "dev"]
    return [sys.executable, "-m", "reflex", "run", "--env", "prod", "--single-port", "--frontend-port", str(port)]


def serve(port: int, dev: bool = False) -> int:
    """Run the app until it exits or we are told to stop; return its exit code."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_database()
    cmd = reflex_command(port, dev)
    log.info("serving on port %s: %s", port, " ".join(cmd[1:]))
    child = subprocess.Popen(cmd, cwd=ROOT, env=reflex_env(), start_new_session=True)

    def stop(signum: int, _frame: object) -> None:
        log.info("stopping (signal %s)", signum)
        _terminate(child)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    finally:
        _terminate(child)
        if settings.uses_embedded_db:
            from stackql_inventory.db.engine import stop_embedded

            stop_embedded(settings)
    return code


def _terminate(child: subprocess.Popen) -> None:
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return
        time.sleep(0.1)
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="default: $DATABRICKS_APP_PORT, else $PORT, else 3000")
    parser.add_argument("--dev", action="store_true", help="hot reload (two ports: 3000 UI, 8000 backend)")
    parser.add_argument("--migrate-only", action="store_true", help="migrate the database and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        get_settings()
    except ValueError as e:  # pydantic's ValidationError names the variable and the problem
        print(f"Invalid configuration:\n{e}", file=sys.stderr)
        return 2
    if args.migrate_only:
        prepare_database()
        return 0
    return serve(args.port or get_settings().serve_port, dev=args.dev)


if __name__ == "__main__":
    sys.exit(main())
