"""Installs the stackql stand-in as `<download_dir>/stackql`, where pystackql looks for the binary."""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

FAKE_SCRIPT = Path(__file__).resolve().with_name("stackql_fake.py")
RECORD_FLAG = "fake-stackql.record"
RECORD_FILE = "invocations.jsonl"


def install_fake_stackql(download_dir: Path, *, record: bool = False) -> Path:
    """Write `download_dir/stackql`: a tiny sh wrapper exec-ing the stand-in; return its path.

    `-I -S` keeps start-up fast and independent of the caller's environment (no site, no
    PYTHON* variables). The wrapper tells the stand-in where it was invoked from, so the
    invocation record lands next to it. `record=True` switches that record on.
    """
    download_dir = Path(download_dir).resolve()
    download_dir.mkdir(parents=True, exist_ok=True)
    binary = download_dir / "stackql"
    binary.write_text(
        "#!/bin/sh\n"
        f'FAKE_STACKQL_BIN="$0" exec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(FAKE_SCRIPT))} "$@"\n'
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if record:
        (download_dir / RECORD_FLAG).touch()
    return binary


def read_invocations(download_dir: Path) -> list[dict]:
    """The stand-in's invocation record (one dict per run) in `download_dir`."""
    import json

    path = Path(download_dir) / RECORD_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
