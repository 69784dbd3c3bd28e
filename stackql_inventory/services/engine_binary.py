"""The stackql binary through pystackql: downloaded once into the download dir, its version and default flags."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackql_inventory import config
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

_PROVISION_CODE = (
    "import sys\n"
    "from pystackql import StackQL\n"
    "StackQL(download_dir=sys.argv[1])\n"
)


def last_error_line(output: str) -> str:
    """The last line of a tool's output that looks like an error (proxy credentials removed), for a message."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if "ERROR" in ln or "Error" in ln), lines[-1] if lines else "")
    err = re.sub(r"//[^/@\s]+@", "//", err)  # never echo proxy credentials
    return err[:300]


@dataclass(frozen=True)
class BinaryInfo:
    """The provisioned stackql binary as pystackql reports it."""

    path: str
    version: str
    sha: str
    flags: tuple[str, ...]  # pystackql's global flags (concurrency, paging, timeouts, approot)


def _global_flags(params: list[str]) -> tuple[str, ...]:
    """pystackql's default `exec` arguments without the command and the output format: the global flags."""
    flags, skip = [], False
    for i, p in enumerate(params):
        if skip:
            skip = False
            continue
        if i == 0 and p == "exec":
            continue
        if p == "--output":
            skip = True
            continue
        flags.append(p)
    return tuple(flags)


def provision(download_dir: Path, timeout_s: float) -> None:
    """Download the binary into `download_dir`; raises ErrorKind.BINARY when it cannot be had in time."""
    # pystackql downloads with no timeout and exit(1)s on failure: let it do so in a child process.
    env = config.child_base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROVISION_CODE, str(download_dir)], env=env, cwd=download_dir,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserFacingError(
            f"The stackql binary is not in {download_dir} and downloading it took longer than "
            f"{timeout_s:g} s. Put the stackql binary there (STACKQL_DOWNLOAD_DIR) or allow "
            "downloads from releases.stackql.io, then retry.", ErrorKind.BINARY) from None
    if proc.returncode != 0 or not (download_dir / "stackql").exists():
        reason = last_error_line(proc.stdout + "\n" + proc.stderr) or f"exit code {proc.returncode}"
        raise UserFacingError(
            f"The stackql binary is not in {download_dir} and could not be downloaded ({reason}). Put the "
            "stackql binary there (STACKQL_DOWNLOAD_DIR) or allow downloads from releases.stackql.io, then "
            "retry.", ErrorKind.BINARY)
    log.info("stackql binary downloaded dir=%s seconds=%.1f", download_dir, time.monotonic() - started)


def build_client(download_dir: Path, app_root: Path, timeout_s: float) -> Any:
    """pystackql's client for the binary in `download_dir`; raises ErrorKind.BINARY when it does not work."""
    # The constructor runs `stackql --version` and calls exit(1) on any failure; a thread bounds it in time.
    outcome: dict[str, Any] = {}

    def build() -> None:
        out = io.StringIO()
        try:
            from pystackql import StackQL

            with contextlib.redirect_stdout(out):
                outcome["client"] = StackQL(download_dir=str(download_dir), app_root=str(app_root), output="dict")
        except BaseException as exc:  # SystemExit from pystackql's exit(1)
            outcome["error"] = exc
        outcome["output"] = out.getvalue()

    worker = threading.Thread(target=build, name="pystackql-init", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise UserFacingError(
            f"`stackql --version` did not answer within {timeout_s:g} s. Replace the binary in "
            f"{download_dir} with a working stackql release, then retry.", ErrorKind.BINARY)
    if "client" not in outcome:
        reason = last_error_line(outcome.get("output", "")) or type(outcome.get("error")).__name__
        raise UserFacingError(
            f"The stackql binary in {download_dir} does not work ({reason}). Replace it with a current "
            "stackql release (or delete it to have it downloaded again), then retry.", ErrorKind.BINARY)
    return outcome["client"]


def binary_info(client: Any) -> BinaryInfo:
    """What the engine keeps of pystackql's client: path, version, sha and global flags."""
    return BinaryInfo(client.bin_path, client.version, client.sha, _global_flags(client.params))
