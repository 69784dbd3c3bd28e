"""Start the real app in production mode (`python -m stackql_inventory.serve`) on a free port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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

    def logged_errors(self) -> list[str]:
        """Lines of the app's log with an ERROR or a traceback."""
        return [line for line in self.log_text().splitlines() if re.search(r"\bERROR\b|Traceback", line)]

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


@contextlib.contextmanager
def another_app(root: Path, env: dict[str, str], *, what: str, record_stackql: bool = False
                ) -> Iterator[tuple[AppServer, Path]]:
    """A further app instance with its own data dir (embedded database) and stackql stand-in under `root`,
    plus `env`; yields (server, root), stops it afterwards and fails if it logged errors."""
    from tests.fakes.install import install_fake_stackql

    install_fake_stackql(root / "stackql", record=record_stackql)
    server = start_app({"STACKQL_INVENTORY_DATA_DIR": str(root / "data"),
                        "STACKQL_DOWNLOAD_DIR": str(root / "stackql"), **env}, root / "app.log")
    try:
        yield server, root
    finally:
        server.stop()
    bad = server.logged_errors()
    assert not bad, f"{what} logged errors:\n" + "\n".join(bad[:40])


@contextlib.contextmanager
def embedded_db(data_dir: Path) -> Iterator[sa.Engine]:
    """An engine on the embedded PostgreSQL of an app whose data dir is `data_dir`."""
    import pgserver

    server = pgserver.get_server(data_dir / "pg", cleanup_mode=None)
    engine = sa.create_engine(server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def app_page(browser: Browser, url: str) -> Iterator[Page]:
    """A page in a fresh browser context on `url`, with app-sized timeouts."""
    context = browser.new_context(base_url=url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()
