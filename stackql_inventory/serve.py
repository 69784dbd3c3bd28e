"""Production launcher: start the embedded database, migrate, then serve UI + websocket on one port.

`python -m stackql_inventory.serve [--port N] [--dev]` — what `make run` (and app.yaml) executes.
Ctrl+C or SIGTERM stops the app and the embedded PostgreSQL it started, within 15 s (Databricks Apps'
limit), also while it is still migrating or building.

Reflex 0.10 needs bun >= 1.4.4 (or Node >= 22.22, which Databricks Apps do not ship). bun comes from the
npm registry: `make` installs it under `.tools/`, the Apps runtime's `npm install` of the root
`package.json` under `node_modules/`. Without it we stop with a message instead of letting Reflex fetch
an installer from outside the package registries.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from stackql_inventory.config import get_settings, process_env

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("stackql_inventory.serve")

# Seconds the app gets to stop after SIGTERM before it is killed, and the embedded PostgreSQL after it:
# together under the 15 s Databricks Apps allow between SIGTERM and SIGKILL.
STOP_GRACE_S = 8
DB_STOP_S = 5
MIN_BUN = (1, 4, 4)
NO_BUN = (
    "bun >= {need} was not found (looked in {where} and on PATH). Reflex needs it to build the UI. "
    "Run `make run` (installs it under .tools/), or `npm install` in {root} (the package.json pins it; "
    "the Databricks Apps runtime does this on deploy)."
)


def bun_candidates() -> list[Path]:
    """Where bun from the npm registry lives: `make`'s .tools/, then the root package.json's node_modules/."""
    return [
        ROOT / ".tools" / "node_modules" / "bun" / "bin" / "bun.exe",
        ROOT / "node_modules" / "bun" / "bin" / "bun.exe",
    ]


def bun_version(path: Path) -> tuple[int, ...] | None:
    """bun's version, or None when `path` is not a working bun (e.g. npm's placeholder without postinstall)."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        return tuple(int(part) for part in out.stdout.strip().split("-")[0].split("."))
    except ValueError:
        return None


def find_bun() -> Path | None:
    """The first working bun >= 1.4.4: .tools/ (make), node_modules/ (npm install of package.json), PATH."""
    on_path = shutil.which("bun")
    for candidate in [*bun_candidates(), *([Path(on_path)] if on_path else [])]:
        if candidate.exists() and (bun_version(candidate) or (0,)) >= MIN_BUN:
            return candidate
    return None


def npm_registry() -> str | None:
    """The registry npm itself is configured with (`npm config get registry`), for Reflex's bun installs.

    Without it Reflex times several public registries and may pick one that is not the configured one.
    """
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        out = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, timeout=30,
                             cwd=ROOT, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    registry = out.stdout.strip()
    return registry if registry.startswith(("http://", "https://")) else None


def reflex_env() -> dict[str, str]:
    """The environment for `reflex run`: no telemetry, no version checks, our bun, npm's registry."""
    env = process_env()
    env["REFLEX_TELEMETRY_ENABLED"] = "false"
    env["REFLEX_CHECK_LATEST_VERSION"] = "false"
    env.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    bun = find_bun()
    if bun is not None:
        env["REFLEX_BUN_PATH"] = str(bun)
        env["PATH"] = f"{bun.parent}{os.pathsep}{env.get('PATH', '')}"
    if not env.get("NPM_CONFIG_REGISTRY"):
        registry = npm_registry()
        if registry:
            env["NPM_CONFIG_REGISTRY"] = registry
    return env


class _Stopped(Exception):
    """SIGTERM/SIGINT arrived before the UI process was started."""


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
    # Every interface: on Databricks the Apps proxy reaches the app over the container's network.
    return [sys.executable, "-m", "reflex", "run", "--env", "prod", "--single-port", "--frontend-port", str(port),
            "--backend-host", "0.0.0.0"]


def serve(port: int, dev: bool = False) -> int:
    """Run the app until it exits or we are told to stop; return its exit code."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    child: subprocess.Popen | None = None
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        log.info("stopping (signal %s)", signum)
        if child is None:
            raise _Stopped(signum)  # interrupts migrating / starting the database
        # Don't wait here: the main thread is inside child.wait(), which holds the lock poll() needs.
        # Ask the UI's process group to stop, and have a timer kill it if it is still there after the grace.
        _signal_group(child.pid, signal.SIGTERM)
        killer = threading.Timer(STOP_GRACE_S, _signal_group, (child.pid, signal.SIGKILL))
        killer.daemon = True
        killer.start()

    # Handlers first: a stop during migrations must still stop the embedded database.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        env = reflex_env()
        if not dev and not env.get("REFLEX_USE_NPM") and "REFLEX_BUN_PATH" not in env:
            print(NO_BUN.format(need=".".join(map(str, MIN_BUN)), root=ROOT,
                                where=", ".join(str(c.parent) for c in bun_candidates())), file=sys.stderr)
            return 2
        prepare_database()
        cmd = reflex_command(port, dev)
        log.info("serving on port %s with bun %s: %s", port, env.get("REFLEX_BUN_PATH", "(npm)"),
                 " ".join(cmd[1:]))
        if stopping:
            return 143
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        return child.wait()
    except _Stopped as e:
        log.info("stopped before serving (signal %s)", e.args[0])
        return 128 + int(e.args[0])
    finally:
        started = time.monotonic()
        if child is not None:
            _terminate(child)
        ui_s = time.monotonic() - started
        if settings.uses_embedded_db:
            from stackql_inventory.db.engine import stop_embedded

            stop_embedded(settings, timeout_s=DB_STOP_S)
        log.info("stopped ui_s=%.2f total_s=%.2f", ui_s, time.monotonic() - started)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(child: subprocess.Popen) -> None:
    """SIGTERM the UI's process group, SIGKILL what is left after STOP_GRACE_S; reap it."""
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
    try:  # also the group's stragglers (bun, granian workers) when the leader already exited
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        child.wait(2)
    except subprocess.TimeoutExpired:
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
