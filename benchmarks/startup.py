"""Time `make run` from a clean clone to the first HTTP 200, then a warm restart.

Cold = fresh clone, no .venv, no bun, no .web, empty pip and bun caches, new data dir.
Warm = the same clone started again (venv, bun, node_modules and database kept).
Last line: `cold_first_200_s=<s> warm_first_200_s=<s>`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1200


def first_200(clone: Path, env: dict[str, str], port: int, log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while time.monotonic() - started < TIMEOUT_S:
            if proc.poll() is not None:
                raise SystemExit(f"make run exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"no HTTP 200 within {TIMEOUT_S} s; see {log}")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C does
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = 3917
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKQL_", "DATABASE_URL", "VIRTUAL_ENV"))}
    env.update({
        "PORT": str(port),
        "STACKQL_INVENTORY_DATA_DIR": str(work / "data"),
        "PIP_NO_CACHE_DIR": "1",
        "BUN_INSTALL_CACHE_DIR": str(work / "bun-cache"),
        "npm_config_cache": str(work / "npm-cache"),
    })
    cold = first_200(clone, env, port, work / "cold.log")
    print(f"cold: clean clone -> first 200 in {cold:.1f} s")
    warm = first_200(clone, env, port, work / "warm.log")
    print(f"warm: restart -> first 200 in {warm:.1f} s")
    print(f"cold_first_200_s={cold:.1f} warm_first_200_s={warm:.1f}")


if __name__ == "__main__":
    sys.exit(main())
