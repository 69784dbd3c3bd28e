"""The batch stream reads stackql's JSON Lines in batches: every odd line still gets the row-by-row treatment."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stackql_inventory.services.engine import Engine, QueryLimits
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.support.replay import make_replay_engine

pytestmark = pytest.mark.timeout(60)

QUERY = "SELECT c, a, b FROM synthetic.bulk.items"
MANY = 1300  # more than two of the engine's batches


@pytest.fixture(scope="module")
def replay_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return make_replay_engine(tmp_path_factory.mktemp("replay"))


def plain(i: int) -> dict:
    return {"a": f"a{i}", "b": None if i % 3 == 0 else "", "c": f"c\t{i}"}


def stream_lines(engine: Engine, tmp_path: Path, lines: list[bytes], *, limit: int | None = None,
                 query: str = QUERY) -> tuple[list[tuple], object, UserFacingError | None]:
    """(rows read before the stream ended or failed, the stream, the error if any)."""
    path = tmp_path / "result.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    rows: list[tuple] = []
    error = None
    stream = None
    try:
        with engine.stream(query, {"REPLAY_JSONL": str(path)}, QueryLimits(row_limit=limit, timeout_s=30)) as stream:
            for row in stream.rows:
                rows.append(row)
    except UserFacingError as exc:
        error = exc
    return rows, stream, error


def encode(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_rows_across_batches_keep_select_order_nulls_and_empty_strings(replay_engine, tmp_path):
    rows, stream, error = stream_lines(replay_engine, tmp_path, [encode(plain(i)) for i in range(MANY)])
    assert error is None
    assert stream.columns == ["c", "a", "b"]
    assert rows == [(f"c\t{i}", f"a{i}", None if i % 3 == 0 else "") for i in range(MANY)]
    assert (stream.row_count, stream.truncated) == (MANY, False)


def test_values_that_are_not_strings_become_text_in_any_batch(replay_engine, tmp_path):
    lines = [encode(plain(i)) for i in range(MANY)]
    odd = {
        700: ({"a": 5, "b": True, "c": {"x": [1, "y"]}}, ("{\"x\":[1,\"y\"]}", "5", "true")),
        701: ({"a": {"String": "s", "Valid": True}, "b": {"String": "", "Valid": False}, "c": 1.5},
              ("1.5", "s", None)),
        1299: ({"a": False, "b": [], "c": None}, (None, "false", "[]")),
    }
    for i, (obj, _) in odd.items():
        lines[i] = encode(obj)
    rows, _, error = stream_lines(replay_engine, tmp_path, lines)
    assert error is None and len(rows) == MANY
    for i, (_, expected) in odd.items():
        assert rows[i] == expected
    assert rows[703] == ("c\t703", "a703", "")
    assert all(type(v) in (str, type(None)) for row in rows for v in row)


def test_a_missing_key_is_null(replay_engine, tmp_path):
    lines = [encode(plain(i)) for i in range(MANY)]
    lines[900] = encode({"a": "only a", "c": "and c"})
    rows, _, error = stream_lines(replay_engine, tmp_path, lines)
    assert error is None and rows[900] == ("and c", "only a", None) and len(rows) == MANY


@pytest.mark.parametrize("bad_line, kind, text", [
    (b"not json at all", ErrorKind.BINARY, "not JSON Lines"),
    (b"[1, 2, 3]", ErrorKind.BINARY, "unexpected JSON value"),
    (b"42", ErrorKind.BINARY, "unexpected JSON value"),
    (b"", ErrorKind.BINARY, "not JSON Lines"),
    (encode({"a": "x", "b": "y", "c": "z", "surprise": "!"}), ErrorKind.SCHEMA, "(surprise)"),
], ids=["text", "array", "number", "blank", "extra-column"])
def test_a_bad_line_fails_after_the_rows_before_it(replay_engine, tmp_path, bad_line, kind, text):
    lines = [encode(plain(i)) for i in range(MANY)]
    lines[800] = bad_line
    rows, _, error = stream_lines(replay_engine, tmp_path, lines)
    assert error is not None and error.kind is kind and text in error.message
    assert rows == [(f"c\t{i}", f"a{i}", None if i % 3 == 0 else "") for i in range(800)]


def test_a_bad_line_beyond_the_row_cap_is_never_read_as_a_row(replay_engine, tmp_path):
    lines = [encode(plain(i)) for i in range(MANY)]
    lines[800] = b"not json"
    rows, stream, error = stream_lines(replay_engine, tmp_path, lines, limit=600)
    assert error is None and len(rows) == 600 and stream.truncated


@pytest.mark.parametrize("count, limit, truncated", [
    (512, 512, False), (513, 512, True), (1024, 512, True), (1024, 1024, False), (1025, 1024, True),
    (1, 1, False), (2, 1, True), (MANY, 777, True),
])
def test_row_cap_at_and_around_batch_edges(replay_engine, tmp_path, count, limit, truncated):
    rows, stream, error = stream_lines(replay_engine, tmp_path, [encode(plain(i)) for i in range(count)], limit=limit)
    assert error is None
    assert len(rows) == min(count, limit) == stream.row_count
    assert stream.truncated is truncated


def test_one_column(replay_engine, tmp_path):
    rows, stream, error = stream_lines(replay_engine, tmp_path, [encode({"a": str(i)}) for i in range(MANY)],
                                       query="SELECT a FROM synthetic.bulk.items")
    assert error is None and stream.columns == ["a"] and rows == [(str(i),) for i in range(MANY)]


SLOW = """#!/bin/sh
case "$1" in
  --version) printf 'stackql v0.10.0 linux (slow1)\\nBuildDate: 2026-01-01\\nhttps://stackql.io\\n' ;;
  exec) cat "$REPLAY_JSONL"; sleep 60 </dev/null >/dev/null 2>&1; cat "$REPLAY_JSONL" ;;
esac
"""


def test_a_row_cap_does_not_wait_for_output_beyond_it(tmp_path):
    """stackql still paging (more output a minute away): the rows under the cap arrive without waiting for it."""
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    (bin_dir / "stackql").write_text(SLOW)
    (bin_dir / "stackql").chmod(0o755)
    path = tmp_path / "page.jsonl"
    path.write_bytes(b"".join(encode(plain(i)) + b"\n" for i in range(50)))
    engine = Engine(bin_dir, tmp_path / "approot")
    started = time.monotonic()
    with engine.stream(QUERY, {"REPLAY_JSONL": str(path)}, QueryLimits(row_limit=20, timeout_s=120)) as s:
        rows = list(s.rows)
    assert len(rows) == 20 and s.truncated
    assert time.monotonic() - started < 30  # not the minute the next page takes
