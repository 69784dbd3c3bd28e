"""A "stackql" that prints a prepared file as its result, so a test's JSON Lines reach the engine byte for byte."""

from __future__ import annotations

from pathlib import Path

from stackql_inventory.services.engine import Engine

REPLAY = """#!/bin/sh
case "$1" in
  --version) printf 'stackql v0.10.0 linux (replay1)\\nBuildDate: 2026-01-01\\nhttps://stackql.io\\n' ;;
  exec) exec cat "$REPLAY_JSONL" ;;
  *) echo "replay stackql: unsupported command $1" >&2; exit 1 ;;
esac
"""


def make_replay_engine(root: Path) -> Engine:
    """An engine whose stackql prints the file named by `REPLAY_JSONL` in the query's environment."""
    bin_dir = root / "replay-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "stackql").write_text(REPLAY)
    (bin_dir / "stackql").chmod(0o755)
    return Engine(bin_dir, root / "replay-approot")
