"""COPY source: rows and stackql JSON Lines blocks become the same COPY text; odd blocks are declined, not mangled."""

from __future__ import annotations

import json

import pytest

from stackql_inventory.services.copy_source import CopySource, Encoded, JsonLinesToCopy
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.support.replay import make_replay_engine

COLS = ["id", "v", "maybe"]
TRICKY = ["plain", "", "tab\there", "new\nline", "cr\rlf\r\n", "back\\slash", "\\N", "\\.", "N", "null", "NULL",
          'quote"s\'', '""', '"', "ünïcødé ☃ 𝄞", "trailing space ", "semi;colon,comma", "\x1f\x1e\x1d", "\u2028",
          "a" * 10_000]
CONST = ("7", "2026-01-01T06:00:00+00:00")


def tricky_rows() -> list[tuple]:
    return [(str(i), v, None if i % 3 else v) for i, v in enumerate(TRICKY)]


def jsonl(rows: list[tuple], columns: list[str] = COLS) -> bytes:
    """stackql's JSON Lines for these rows: keys sorted, UTF-8, one object a line."""
    return b"".join(json.dumps(dict(zip(columns, r)), sort_keys=True, ensure_ascii=False,
                               separators=(",", ":")).encode() + b"\n" for r in rows)


def encode_rows(rows, columns=COLS, constants=CONST) -> bytes:
    """What psycopg2's COPY reads from the source (the writer raises the source's own error, as here)."""
    src = CopySource.from_rows(rows, columns, constants)
    try:
        out = b"".join(iter(src.read, b""))
    except Exception:
        assert src.error is not None
        raise src.error from None
    src.join()
    return out


def test_rows_become_copy_text_with_null_as_backslash_n_and_specials_escaped():
    out = encode_rows([("a", None, "t\tb"), ("\\", "", 'x"q')], constants=("7", "T"))
    assert out == b'a\t\\N\tt\\tb\t7\tT\n\\\\\t\tx"q\t7\tT\n'


def test_values_that_are_not_text_are_written_as_str_and_nul_is_an_error_naming_the_column():
    assert encode_rows([("1", 2, None)], constants=()) == b'1\t2\t\\N\n'
    with pytest.raises(UserFacingError) as e:
        encode_rows([("1", "a\x00b", None)])
    assert e.value.kind is ErrorKind.SCHEMA and "'v'" in e.value.message and "NUL" in e.value.message


@pytest.mark.parametrize("row", [("1", "2"), ("1", "2", "3", "4"), ()])
def test_a_row_of_the_wrong_length_is_an_error(row):
    with pytest.raises(UserFacingError, match="Row 2 of the result has"):
        encode_rows([("a", "b", "c"), row])


def test_no_columns_writes_the_constants_alone():
    assert encode_rows([(), ()], columns=[], constants=("7", "T")) == b'7\tT\n7\tT\n'


@pytest.mark.parametrize("constants", [CONST, ()], ids=["with-constants", "staged"])
@pytest.mark.parametrize("columns", [COLS, ["v"]], ids=["three-columns", "one-column"])
def test_a_json_lines_block_converts_to_exactly_the_rows_copy_text(constants, columns):
    rows = [r[-len(columns):] for r in tricky_rows() * 3]
    block = jsonl(rows, columns)
    converted = JsonLinesToCopy(columns, constants)(block, len(rows))
    assert isinstance(converted, Encoded) and converted.rows == len(rows)
    assert converted.data == encode_rows(rows, columns, constants)


def test_a_block_without_special_characters_needs_no_escaping_pass_and_stays_exact():
    rows = [(str(i), f"plain {i}", None if i % 2 else "") for i in range(1000)]
    assert JsonLinesToCopy(COLS, CONST)(jsonl(rows), 1000).data == encode_rows(rows)


def test_column_order_follows_the_columns_not_the_sorted_keys_and_missing_keys_are_null():
    block = b'{"a":"1","b":"2","c":"3"}\n{"c":"z"}\n'
    converted = JsonLinesToCopy(["c", "a", "b"])(block, 2)
    assert converted == Encoded(b'3\t1\t2\nz\t\\N\t\\N\n', 2)


@pytest.mark.parametrize("block, lines", [
    (b'{"id":"1","v":2,"maybe":null}\n', 1),                       # a number: the row path makes it text
    (b'{"id":"1","v":true,"maybe":null}\n', 1),                    # a boolean
    (b'{"id":"1","v":{"k":"x"},"maybe":null}\n', 1),               # nested JSON
    (b'{"id":"1","v":["x"],"maybe":null}\n', 1),
    (b'{"id":"1","v":"x","maybe":null,"extra":"!"}\n', 1),         # a key the first row did not have
    (b'{"id":"1","v":"a\\u0000b","maybe":null}\n', 1),             # NUL: the row path names the column
    (b'{"id":"1","v":"\xff\xfe","maybe":null}\n', 1),              # not UTF-8
    (b'{"id":"1","v":"\\ud800","maybe":null}\n', 1),               # a lone surrogate
    (b'{"id":"1"}\n\n{"id":"2"}\n', 3),                             # a blank line
    (b'{"id":"1"}{"id":"2"}\n', 1),                                 # two objects on one line
    (b'{"id":"1"} trailing\n', 1),
    (b'not json\n', 1),
    (b'[1,2]\n', 1),
    (b'"x"\n', 1),
], ids=["number", "bool", "object", "array", "extra-key", "nul", "not-utf8", "surrogate", "blank-line",
        "two-objects", "trailing", "text", "json-array", "json-string"])
def test_blocks_the_row_path_must_judge_are_declined(block, lines):
    assert JsonLinesToCopy(COLS, CONST)(block, lines) is None


def test_duplicate_or_no_columns_are_never_converted():
    assert JsonLinesToCopy(["a", "a"])(b'{"a":"1"}\n', 1) is None
    assert JsonLinesToCopy([])(b'{}\n', 1) is None


def test_a_source_mixing_encoded_blocks_and_row_batches_counts_and_orders_both():
    conv = JsonLinesToCopy(COLS, CONST)
    batches = [conv(jsonl([("1", "a", None)]), 1), [("2", "b", "")], conv(jsonl([("3", "c", "x")]), 1)]
    src = CopySource(batches, COLS, CONST)
    out = b"".join(iter(src.read, b""))
    assert out == encode_rows([("1", "a", None), ("2", "b", ""), ("3", "c", "x")]) and src.rows == 3


# ------------------------------------------------------------------------------------- the engine's batches


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    return make_replay_engine(tmp_path_factory.mktemp("replay"))


def batches_of(replay, tmp_path, data: bytes, convert, limit=None, query="SELECT id, v, maybe FROM t"):
    from stackql_inventory.services.engine import QueryLimits

    path = tmp_path / "r.jsonl"
    path.write_bytes(data)
    with replay.stream(query, {"REPLAY_JSONL": str(path)}, QueryLimits(row_limit=limit, timeout_s=30)) as s:
        got = list(s.batches(convert))
    return got, s


def test_blocks_hold_whole_lines_and_every_row_arrives_once(replay, tmp_path):
    rows = [(str(i), f"value {i} " + "x" * (i % 700), None if i % 5 else "") for i in range(12_000)]
    seen: list[int] = []

    def convert(block: bytes, lines: int):
        assert block.endswith(b"\n") and block.count(b"\n") == lines
        seen.append(lines)
        return Encoded(block, lines)

    got, s = batches_of(replay, tmp_path, jsonl(rows), convert)
    assert len(seen) >= 3  # several ~1 MiB blocks
    first, *blocks = got
    assert first == [rows[0]]  # the first line, read to learn the columns, comes as a row
    assert b"".join(b.data for b in blocks) == jsonl(rows[1:])
    assert s.row_count == 12_000 and not s.truncated


def test_a_declined_block_arrives_as_rows_and_a_bad_line_still_fails_after_the_rows_before_it(replay, tmp_path):
    from stackql_inventory.services.engine import QueryLimits

    rows = [(str(i), "v", None) for i in range(3000)]
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl(rows).replace(b'{"id":"2500","maybe":null,"v":"v"}', b"not json"))
    got: list = []
    with pytest.raises(UserFacingError, match="not JSON Lines"):
        with replay.stream("SELECT id, v, maybe FROM t", {"REPLAY_JSONL": str(path)},
                           QueryLimits(row_limit=None, timeout_s=30)) as s:
            for batch in s.batches(lambda block, lines: None):
                assert isinstance(batch, list)
                got.extend(batch)
    assert got == rows[:2500]


@pytest.mark.parametrize("limit", [1, 2, 511, 2999, 3000])
def test_the_row_limit_cuts_a_block_at_a_line(replay, tmp_path, limit):
    rows = [(str(i), "v", None) for i in range(3000)]
    conv = JsonLinesToCopy(COLS)
    got, s = batches_of(replay, tmp_path, jsonl(rows), conv, limit=limit)
    n = sum(b.rows if isinstance(b, Encoded) else len(b) for b in got)
    assert n == limit == s.row_count and s.truncated is (limit < 3000)


def test_rows_and_batches_cannot_both_be_consumed(replay, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(jsonl([("1", "a", None)]))
    with replay.stream("SELECT id, v, maybe FROM t", {"REPLAY_JSONL": str(path)}) as s:
        _ = s.rows
        with pytest.raises(RuntimeError, match="consumed once"):
            s.batches()


def test_a_line_longer_than_a_block_and_a_last_line_without_newline_arrive_whole(replay, tmp_path):
    rows = [(str(i), "v" * (2_500_000 if i == 3 else 10), None) for i in range(6)]
    data = jsonl(rows).rstrip(b"\n")
    got, s = batches_of(replay, tmp_path, data, JsonLinesToCopy(COLS, CONST))
    out = b"".join(b.data if isinstance(b, Encoded) else encode_rows(b) for b in got)
    assert out == encode_rows(rows) and s.row_count == 6
    path = tmp_path / "r.jsonl"
    with replay.stream("SELECT id, v, maybe FROM t", {"REPLAY_JSONL": str(path)}) as s:
        assert list(s.rows) == rows
