"""The Databricks App start-up path, run locally: app.yaml's command, bun from `npm install`, the port from
$DATABRICKS_APP_PORT, `make run`, and SIGTERM handled within the 15 s Databricks Apps allow."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from tests.support.app_server import free_port, start_app, wait_http

ROOT = Path(__file__).resolve().parents[1]
STOP_LIMIT_S = 15  # Databricks Apps: SIGKILL 15 s after SIGTERM


def _leftovers(pid: int, pgdata: Path) -> list[str]:
    """Processes of the app's session still alive, and the embedded PostgreSQL if it still runs."""
    alive = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.info["pid"]) == pid:
                alive.append(f"{proc.info['pid']} {proc.info['name']}")
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        pg_pid = int(pid_file.read_text().splitlines()[0])
        if psutil.pid_exists(pg_pid):
            alive.append(f"{pg_pid} postgres (embedded)")
    return alive


def _sigterm_and_time(process: subprocess.Popen) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_LIMIT_S + 10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    return time.monotonic() - started


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


# --- app.yaml -----------------------------------------------------------------------------------
def test_app_yaml_command_is_an_argv_list_with_the_app_port() -> None:
    app = yaml.safe_load((ROOT / "app.yaml").read_text())
    command = app["command"]
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    assert command[:3] == ["python", "-m", "stackql_inventory.serve"]  # no shell, no `sh -c`
    assert not any(token in " ".join(command) for token in ("&&", "||", ";", "|", "`", "$("))
    # Only $DATABRICKS_APP_PORT is substituted by the runtime, so it must stand alone as an argument.
    assert [a for a in command if "$" in a] == ["$DATABRICKS_APP_PORT"]
    assert command[command.index("$DATABRICKS_APP_PORT") - 1] == "--port"


def test_app_yaml_env_entries_are_well_formed_and_known_settings() -> None:
    from stackql_inventory.config import Settings

    app = yaml.safe_load((ROOT / "app.yaml").read_text())
    known = {choice for field in Settings.model_fields.values() if field.validation_alias
             for choice in field.validation_alias.choices}
    names = []
    for entry in app["env"]:
        assert set(entry) in ({"name", "value"}, {"name", "valueFrom"}), entry  # exactly one source
        assert isinstance(entry.get("value", ""), str), f"{entry['name']}: quote values (YAML types break env)"
        names.append(entry["name"])
        assert entry["name"] in known or entry["name"].startswith("REFLEX_"), entry["name"]
    assert len(names) == len(set(names))
    value_from = {e["name"]: e["valueFrom"] for e in app["env"] if "valueFrom" in e}
    assert value_from == {"LAKEBASE_ENDPOINT": "postgres", "ANTHROPIC_API_KEY": "anthropic-api-key"}
    # Never a database password or a workspace token in app.yaml: the runtime and the SDK provide identity.
    assert not {"PGPASSWORD", "DATABRICKS_TOKEN", "DATABASE_URL"} & set(names)


def test_package_json_pins_bun_from_the_npm_registry() -> None:
    import json

    package = json.loads((ROOT / "package.json").read_text())
    assert package["dependencies"] == {"bun": "1.4.4"}  # exact: Reflex needs >= 1.4.4
    assert "build" not in package.get("scripts", {}) and "start" not in package.get("scripts", {})
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/bun"]["version"] == "1.4.4"
    assert lock["packages"]["node_modules/@oven/bun-linux-x64"]["version"] == "1.4.4"
    makefile = (ROOT / "Makefile").read_text()
    assert "BUN_VERSION := 1.4.4" in makefile  # `make run` installs the same bun


# --- SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_stops_the_serving_app_within_15_s_and_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    server = start_app({"STACKQL_INVENTORY_DATA_DIR": str(data), "DATABRICKS_APP_PORT": str(port)},
                       tmp_path / "app.log", port=port, args=["--port", str(port)])
    assert _get(f"{server.url}/ping").strip('"') == "pong"
    assert (data / "pg" / "postmaster.pid").exists()  # the embedded database runs
    elapsed = _sigterm_and_time(server.process)
    assert elapsed < STOP_LIMIT_S, f"took {elapsed:.1f} s to stop\n{server.log_text()[-3000:]}"
    assert server.process.returncode is not None
    assert _leftovers(server.process.pid, data / "pg") == []
    with pytest.raises(OSError):
        _get(f"{server.url}/ping")


def test_sigterm_while_starting_up_also_stops_cleanly(tmp_path: Path) -> None:
    port, data, log_path = free_port(), tmp_path / "data", tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "DATABRICKS_"))}
    env.update({"STACKQL_INVENTORY_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1",
                "REFLEX_WEB_WORKDIR": str(tmp_path / ".web"), "REFLEX_STATES_WORKDIR": str(tmp_path / ".states")})
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "stackql_inventory.serve", "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while "serving on port" not in log_path.read_text() and time.monotonic() < deadline:  # database up, build starts
        assert process.poll() is None, log_path.read_text()
        time.sleep(0.05)
    elapsed = _sigterm_and_time(process)
    assert elapsed < STOP_LIMIT_S, f"took {elapsed:.1f} s\n{log_path.read_text()[-3000:]}"
    assert _leftovers(process.pid, data / "pg") == []


# --- the deployed start-up path -----------------------------------------------------------------
def _app_copy(dest: Path) -> Path:
    """The files a deployment uploads: what git tracks (or would track) in this checkout."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not rel.startswith((".venv", ".tools", "node_modules")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _runtime_env(tmp_path: Path, port: int) -> dict[str, str]:
    """Like the Apps runtime: the app's Python first on PATH, no bun anywhere, the port injected."""
    path = [str(Path(sys.executable).parent)] + [p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                  if p and not (Path(p) / "bun").exists()]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "DATABRICKS_", "REFLEX_"))}
    env.update({"PATH": os.pathsep.join(path), "DATABRICKS_APP_PORT": str(port), "PYTHONUNBUFFERED": "1",
                "STACKQL_INVENTORY_DATA_DIR": str(tmp_path / "data")})
    return env


def test_npm_install_then_the_app_yaml_command_serves_on_the_app_port(tmp_path: Path) -> None:
    app_dir = _app_copy(tmp_path / "app")
    port = free_port()
    env = _runtime_env(tmp_path, port)
    command = [port_arg.replace("$DATABRICKS_APP_PORT", str(port))
               for port_arg in yaml.safe_load((app_dir / "app.yaml").read_text())["command"]]

    # Before `npm install` there is no bun: a clear message, not an installer fetched from elsewhere.
    early = subprocess.run(command, cwd=app_dir, env=env, capture_output=True, text=True, timeout=120)
    assert early.returncode == 2, early.stdout + early.stderr
    assert "bun >= 1.4.4 was not found" in early.stderr and "npm install" in early.stderr

    # Step 1 of the runtime: `npm install` (package.json + package-lock.json) brings bun from the npm registry.
    npm = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"], cwd=app_dir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert npm.returncode == 0, npm.stdout + npm.stderr
    bun = app_dir / "node_modules" / "bun" / "bin" / "bun.exe"
    assert subprocess.run([str(bun), "--version"], capture_output=True, text=True).stdout.strip() == "1.4.4"

    # Step 3: the command, with $DATABRICKS_APP_PORT substituted as the runtime does.
    log_path = tmp_path / "app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/", process, log_path)
        assert _get(f"http://127.0.0.1:{port}/ping").strip('"') == "pong"  # backend on the same port
        log_text = log_path.read_text()
        assert f"with bun {bun}" in log_text  # the npm-installed bun, nothing else
        assert "Installing bun" not in log_text and "bun.sh" not in log_text
        assert (app_dir / ".web").is_dir()
    finally:
        elapsed = _sigterm_and_time(process)
    assert elapsed < STOP_LIMIT_S
    assert _leftovers(process.pid, tmp_path / "data" / "pg") == []


def _non_loopback_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        address = s.getsockname()[0]
    assert not address.startswith("127."), "this machine has no non-loopback IPv4 address to test the bind with"
    return address


def test_make_run_serves_on_databricks_app_port(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "DATABRICKS_"))}
    env.update({"DATABRICKS_APP_PORT": str(port), "STACKQL_INVENTORY_DATA_DIR": str(tmp_path / "data"),
                "PYTHONUNBUFFERED": "1", "REFLEX_WEB_WORKDIR": str(tmp_path / ".web"),
                "REFLEX_STATES_WORKDIR": str(tmp_path / ".states")})
    log_path = tmp_path / "make.log"
    # The set-up steps (venv, bun) are the suite's own prerequisites: treat them as done, run the recipe.
    make = ["make", "--no-print-directory", "-o", ".venv/.installed", "-o", ".tools/node_modules/bun/bin/bun.exe",
            "run"]
    with log_path.open("w") as log:
        process = subprocess.Popen(make, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/", process, log_path)
        assert _get(f"http://127.0.0.1:{port}/ping").strip('"') == "pong"
        assert f"serving on port {port}" in log_path.read_text()
        # Bound to every interface (the Apps proxy does not connect over loopback), not only 127.0.0.1.
        address = _non_loopback_address()
        assert _get(f"http://{address}:{port}/ping").strip('"') == "pong"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # make and the app it started, as a terminal's Ctrl+C does
        try:
            process.wait(STOP_LIMIT_S + 10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert _leftovers(process.pid, tmp_path / "data" / "pg") == []
