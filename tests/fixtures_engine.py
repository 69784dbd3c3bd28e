"""Fixtures shared by the stand-in, engine and catalog tests: stackql binaries (stand-in or real) and engines."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stackql_inventory.services.engine import Engine
from tests.fakes.install import install_fake_stackql, read_invocations

# The opt-in suite: STACKQL_REAL=1 runs the portable engine tests against a real stackql binary too,
# taken from STACKQL_REAL_BIN (a path to the binary) or STACKQL_REAL_DOWNLOAD_DIR (a folder holding
# `stackql`); with neither, pystackql downloads it. Select only those with `-m real_stackql`.
REAL_ENABLED = os.environ.get("STACKQL_REAL") == "1"
TARGETS = [pytest.param("fake", id="fake")] + (
    [pytest.param("real", id="real", marks=pytest.mark.real_stackql)] if REAL_ENABLED else []
)

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKE00EXAMPLE01",
    # Quotes, `$`, backticks and a newline: all must reach stackql unchanged.
    "AWS_SECRET_ACCESS_KEY": "wJalr'XUtn\"FEMI/K7MDENG+bPx$HOME`id`\nRfiCYEXAMPLEKEY",
}
GOOGLE_ENV = {
    "GOOGLE_CREDENTIALS": '{"type": "service_account", "project_id": "stackql-demo", '
                          '"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n'
                          '-----END PRIVATE KEY-----\\n", '
                          '"client_email": "it\'s-me@stackql-demo.iam.gserviceaccount.com"}',
}


def minimal_env(**extra: str) -> dict[str, str]:
    """A clean environment for running the stand-in directly (no credentials leaking in from the host)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Wait until something listens on `port`; fail with the server's output if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"stackql srv exited with {proc.returncode}\nstdout: {out!r}\nstderr: {err!r}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"stackql srv did not listen on {port} within {timeout_s}s\nstdout: {out!r}\nstderr: {err!r}")


@pytest.fixture(scope="session")
def fake_download_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A download dir holding the stand-in as `stackql` (shared, no invocation record)."""
    d = tmp_path_factory.mktemp("stackql-fake-bin")
    install_fake_stackql(d)
    return d


@pytest.fixture(scope="session")
def real_download_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A download dir for the real binary (opt-in suite only)."""
    given_dir = os.environ.get("STACKQL_REAL_DOWNLOAD_DIR")
    if given_dir:
        return Path(given_dir)
    d = tmp_path_factory.mktemp("stackql-real-bin")
    given_bin = os.environ.get("STACKQL_REAL_BIN")
    if given_bin:
        shutil.copy2(given_bin, d / "stackql")
    return d  # empty: pystackql downloads the binary


@pytest.fixture(scope="module", params=TARGETS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A module-wide engine on the stand-in (and, with STACKQL_REAL=1, on a real stackql)."""
    if request.param == "fake":
        download_dir = request.getfixturevalue("fake_download_dir")
    else:
        download_dir = request.getfixturevalue("real_download_dir")
    eng = Engine(download_dir, tmp_path_factory.mktemp("approot"), install_timeout_s=300.0)
    eng.target = request.param  # type: ignore[attr-defined]
    yield eng
    eng.close()


@pytest.fixture()
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Factory for an isolated engine with its own stand-in copy (optionally recording invocations)."""
    made: list[Engine] = []

    def make(record: bool = False, **kwargs) -> Engine:
        n = len(made)
        bin_dir = tmp_path / f"bin{n}"
        install_fake_stackql(bin_dir, record=record)
        eng = Engine(bin_dir, tmp_path / f"approot{n}", **kwargs)
        eng.invocations = lambda: read_invocations(bin_dir)  # type: ignore[attr-defined]
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.close()


def pid_alive(pid: int) -> bool:
    """False once the process is gone or a zombie whose threads have all exited."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    return not (state in ("Z", "X") and threads <= 1)
