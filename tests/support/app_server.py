"""Start the real app in production mode (`python -m stackql_inventory.serve`) on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """A running app process; `url` answers HTTP, `log_path` holds its output."""

    process: subprocess.Popen
    url: str
    port: int
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> float:
        """SIGTERM the app; return seconds until it exited (killed after 20 s)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return time.monotonic() - started


def wait_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"app exited with {process.returncode} before answering {url}.\n--- log ---\n"
                + log_path.read_text(errors="replace")[-8000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app did not answer {url} within {timeout} s.\n--- log ---\n"
                       + log_path.read_text(errors="replace")[-8000:])


def start_app(env_overrides: dict[str, str], log_path: Path, port: int | None = None,
              args: list[str] | None = None) -> AppServer:
    """Launch the app like `make run` does, with `env_overrides`, and wait until `/` answers 200."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKQL_", "DATABASE_URL", "PG", "DATABRICKS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "REFLEX_TELEMETRY_ENABLED": "false"})
    # Each app instance builds its own frontend: the build embeds the websocket port.
    work = log_path.parent
    env.update({"REFLEX_WEB_WORKDIR": str(work / ".web"), "REFLEX_STATES_WORKDIR": str(work / ".states")})
    env.update(env_overrides)
    log = log_path.open("w")
    cmd = [sys.executable, "-m", "stackql_inventory.serve", *(args if args is not None else ["--port", str(port)])]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", process, log_path)
    except Exception:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        raise
    return AppServer(process=process, url=url, port=port, log_path=log_path)
