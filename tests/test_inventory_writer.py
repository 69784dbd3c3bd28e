"""Inventory writer on real PostgreSQL: write modes, atomicity, schema evolution, identifiers, views, locking."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from stackql_inventory.services import engine, inventory_writer as w
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.support.replay import make_replay_engine
from tests.support.runner import bulk_query, fake_stackql, rows, scalar, snapshot  # noqa: F401

S = "stackql_inventory"
T0 = datetime(2026, 1, 1, 6, 0, tzinfo=timezone.utc)


def at(run: int) -> datetime:
    return T0 + timedelta(hours=run)


def write(table: str, columns, data, *, mode: str = "replace", run: int = 1, keys=(), schema: str = S,
          provenance=None):
    result, refresh = w.write(schema, table, columns, iter(data), mode=mode, run_id=run, collected_at=at(run),
                              key_columns=keys, provenance=provenance)
    return result


def write_streamed(tmp_path, table: str, columns, data, *, mode: str = "replace", run: int = 1, keys=()):
    """Write `data` as the runner does: stackql's JSON Lines (a replayed file) streamed into the writer."""
    path = tmp_path / f"{table}-{run}.jsonl"
    path.write_bytes(b"".join(json.dumps(dict(zip(columns, r)), sort_keys=True, ensure_ascii=False).encode() + b"\n"
                              for r in data))
    query = f"SELECT {', '.join(columns)} FROM synthetic.bulk.items"
    with w.open_target(S, table) as target:
        with make_replay_engine(tmp_path).stream(query, {"REPLAY_JSONL": str(path)}) as s:
            return target.write(s.columns, s, mode=mode, run_id=run, collected_at=at(run), key_columns=keys)


def columns_of(db, table: str, schema: str = S) -> list[tuple[str, str]]:
    return rows(db, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                t=f'"{schema}"."{table}"')


# ---------------------------------------------------------------------------------------------- modes


def test_replace_keeps_only_the_latest_result_with_its_run_and_time(db):
    cols = ["id", "name"]
    first = write("things", cols, [("1", "a"), ("2", "b"), ("3", "c")], run=1)
    assert first.created and first.rows_written == 3
    write("things", cols, [("2", "b2"), ("4", "d")], run=2)
    assert rows(db, f"SELECT id, name, _stackql_run_id, _stackql_collected_at FROM {S}.things ORDER BY id") == [
        (2, "b2", 2, at(2)), (4, "d", 2, at(2))]
    write("things", cols, [], run=3)  # an empty result is the latest result: no rows
    assert scalar(db, f"SELECT count(*) FROM {S}.things") == 0
    assert columns_of(db, "things") == [("id", "bigint"), ("name", "text"), ("_stackql_run_id", "bigint"),
                                        ("_stackql_collected_at", "timestamp with time zone")]


def test_append_keeps_every_run(db):
    cols = ["id", "name"]
    for run in (1, 2, 3):
        write("log", cols, [(str(i), f"r{run}") for i in range(run)], mode="append", run=run)
    assert rows(db, f"SELECT _stackql_run_id, count(*), min(name), max(_stackql_collected_at) FROM {S}.log "
                    "GROUP BY 1 ORDER BY 1") == [(1, 1, "r1", at(1)), (2, 2, "r2", at(2)), (3, 3, "r3", at(3))]


HISTORY_STATE = ("SELECT id, name FROM stackql_inventory.res WHERE _valid_from <= :t "
                 "AND (_valid_to IS NULL OR _valid_to > :t) AND NOT _is_deleted ORDER BY id")
HISTORY_STATE_BY_RUN = ("SELECT id, name FROM stackql_inventory.res WHERE _stackql_run_id <= :r "
                        "AND (_closed_by_run_id IS NULL OR _closed_by_run_id > :r) AND NOT _is_deleted ORDER BY id")


def test_history_add_change_delete_across_runs_and_state_as_of_each_run(db):
    cols = ["id", "name", "size"]
    results = {
        1: [("a", "alpha", "1"), ("b", "beta", "2")],
        2: [("a", "alpha", "1"), ("b", "beta-renamed", "2"), ("c", "gamma", "3")],  # change b, add c
        3: [("a", "alpha", "1"), ("c", "gamma", "3")],                              # delete b
        4: [("a", "alpha", "1"), ("b", "beta-back", "5"), ("c", "gamma", "3")],     # b comes back
    }
    counts = {run: write("res", cols, data, mode="history", run=run, keys=["id"]).history
              for run, data in results.items()}
    assert counts[1] == w.HistoryCounts(opened=2, closed=0, deleted=0, unchanged=0)
    assert counts[2] == w.HistoryCounts(opened=2, closed=1, deleted=0, unchanged=1)
    assert counts[3] == w.HistoryCounts(opened=0, closed=1, deleted=1, unchanged=2)
    assert counts[4] == w.HistoryCounts(opened=1, closed=1, deleted=0, unchanged=2)

    versions = rows(db, "SELECT id, name, _stackql_run_id, _valid_from, _valid_to, _first_seen, _last_seen, "
                        "_is_deleted, _closed_by_run_id FROM stackql_inventory.res ORDER BY id, _valid_from")
    assert versions == [
        ("a", "alpha", 1, at(1), None, at(1), at(4), False, None),
        ("b", "beta", 1, at(1), at(2), at(1), at(1), False, 2),
        ("b", "beta-renamed", 2, at(2), at(3), at(1), at(2), False, 3),
        ("b", "beta-renamed", 3, at(3), at(4), at(1), at(2), True, 4),   # the tombstone keeps the last values
        ("b", "beta-back", 4, at(4), None, at(1), at(4), False, None),
        ("c", "gamma", 2, at(2), None, at(2), at(4), False, None),
    ]
    for run, data in results.items():
        expected = [(i, n) for i, n, _ in sorted(data)]
        assert rows(db, HISTORY_STATE, t=at(run)) == expected
        assert rows(db, HISTORY_STATE_BY_RUN, r=run) == expected
    assert rows(db, "SELECT count(*) FROM stackql_inventory.res WHERE _valid_to IS NULL") == [(3,)]
    hashes = rows(db, "SELECT DISTINCT _key_hash FROM stackql_inventory.res WHERE id = 'b'")
    assert len(hashes) == 1 and len(hashes[0][0]) == 32


def test_history_without_keys_is_keyed_on_the_whole_row_and_keeps_duplicates(db):
    cols = ["name", "zone"]
    write("hk", cols, [("x", "1"), ("x", "1"), ("y", "2")], mode="history", run=1)
    result = write("hk", cols, [("x", "1"), ("y", "3")], mode="history", run=2)
    # One of the two identical x rows went away; y changed, which without keys is a delete plus an add.
    assert result.history == w.HistoryCounts(opened=1, closed=2, deleted=2, unchanged=1)
    assert rows(db, "SELECT name, zone FROM stackql_inventory.hk WHERE _valid_to IS NULL AND NOT _is_deleted "
                    "ORDER BY 1, 2") == [("x", 1), ("y", 3)]
    assert rows(db, "SELECT name, zone FROM stackql_inventory.hk WHERE _valid_from <= :t "
                    "AND (_valid_to IS NULL OR _valid_to > :t) AND NOT _is_deleted ORDER BY 1, 2", t=at(1)) == [
        ("x", 1), ("x", 1), ("y", 2)]


def test_history_duplicate_keys_are_refused_and_the_table_is_untouched(db):
    write("dupk", ["id", "v"], [("1", "a")], mode="history", run=1, keys=["id"])
    before = snapshot(db, "dupk")
    with pytest.raises(UserFacingError) as e:
        write("dupk", ["id", "v"], [("1", "a"), ("2", "b"), ("2", "c")], mode="history", run=2, keys=["id"])
    assert e.value.kind is ErrorKind.SCHEMA
    assert "(id)" in e.value.message and "2" in e.value.message and "2 times" in e.value.message
    assert snapshot(db, "dupk") == before


def test_history_key_column_must_be_in_the_result(db):
    with pytest.raises(UserFacingError) as e:
        write("nokey", ["id", "v"], [("1", "a")], mode="history", run=1, keys=["instance_id"])
    assert e.value.kind is ErrorKind.VALIDATION and "'instance_id'" in e.value.message
    assert scalar(db, "SELECT to_regclass('stackql_inventory.nokey')") is None


@pytest.mark.parametrize("first,then,needle", [
    ("replace", "history", "history mode needs its own table"),
    ("append", "history", "history mode needs its own table"),
    ("history", "replace", "would discard"),
    ("history", "append", "would discard"),
])
def test_switching_to_or_from_history_is_refused(db, first, then, needle):
    write("switch", ["id"], [("1",)], mode=first, run=1, keys=["id"] if first == "history" else ())
    before = snapshot(db, "switch")
    with pytest.raises(UserFacingError) as e:
        write("switch", ["id"], [("2",)], mode=then, run=2, keys=["id"] if then == "history" else ())
    assert needle in e.value.message
    assert snapshot(db, "switch") == before


def test_replace_and_append_may_share_a_table(db):
    write("mixed", ["id"], [("1",)], mode="append", run=1)
    write("mixed", ["id"], [("2",)], mode="append", run=2)
    write("mixed", ["id"], [("3",)], mode="replace", run=3)
    assert rows(db, f"SELECT id, _stackql_run_id FROM {S}.mixed") == [(3, 3)]


def test_a_table_not_made_by_the_app_or_a_view_is_not_a_target(db):
    with db.begin() as c:
        c.execute(sa.text(f"CREATE TABLE {S}.foreign_data (id int)"))
        c.execute(sa.text(f"INSERT INTO {S}.foreign_data VALUES (7)"))
        c.execute(sa.text(f"CREATE VIEW {S}.a_view AS SELECT 1 AS id"))
    with pytest.raises(UserFacingError) as e:
        write("foreign_data", ["id"], [("1",)])
    assert "not created by StackQL Inventory" in e.value.message
    assert rows(db, f"SELECT * FROM {S}.foreign_data") == [(7,)]
    with pytest.raises(UserFacingError) as e:
        write("a_view", ["id"], [("1",)])
    assert "is a view" in e.value.message


def test_unknown_mode_and_reserved_result_columns_are_refused(db):
    with pytest.raises(UserFacingError, match="Unknown write mode"):
        write("m", ["id"], [("1",)], mode="upsert")
    with pytest.raises(UserFacingError, match="_stackql_run_id") as e:
        write("m", ["_stackql_run_id"], [("1",)])
    assert e.value.kind is ErrorKind.SCHEMA
    with pytest.raises(UserFacingError, match="_valid_to"):
        write("m", ["id", "_valid_to"], [("1", "x")], mode="history", keys=["id"])
    assert scalar(db, "SELECT to_regclass('stackql_inventory.m')") is None


# ---------------------------------------------------------------------------------------------- types & evolution


def test_types_are_inferred_from_every_value_of_the_first_run(db):
    cols = ["i", "f", "b", "ts", "txt", "zeros", "mixed", "nulls", "big", "badts", "js", "local_ts"]
    data = [
        ("1", "1", "true", "2024-01-01T00:00:00Z", "x", "007", "1", None, "9223372036854775807",
         "2024-13-01T00:00:00Z", '{"a": 1}', "2024-01-01 10:00:00"),
        ("-20", "2.5", "False", "2024-02-29T12:30:00.123456+02:00", "", "010", "abc", None, "1",
         "2024-01-01T00:00:00Z", "[1, 2]", "2024-06-01T10:00"),
        (None, "1e3", None, None, None, None, "2", None, "9223372036854775808", None, None, None),
    ]
    write("typed", cols, data)
    assert dict(columns_of(db, "typed")) == {
        "i": "bigint", "f": "double precision", "b": "boolean", "ts": "timestamp with time zone",
        "txt": "text", "zeros": "text", "mixed": "text", "nulls": "text", "big": "text", "badts": "text",
        "js": "text", "local_ts": "timestamp with time zone",
        "_stackql_run_id": "bigint", "_stackql_collected_at": "timestamp with time zone"}
    got = rows(db, f"SELECT i, f, b, ts, txt, zeros, local_ts FROM {S}.typed ORDER BY f")
    assert got[0] == (1, 1.0, True, datetime(2024, 1, 1, tzinfo=timezone.utc), "x", "007",
                      datetime(2024, 1, 1, 10, tzinfo=timezone.utc))
    assert got[1][4] == "" and got[2][4] is None  # empty string and NULL stay different
    assert got[2][0] is None and got[2][1] == 1000.0


def test_new_columns_are_added_and_vanished_columns_kept(db):
    write("evolve", ["id", "name"], [("1", "a")], run=1)
    result = write("evolve", ["id", "size", "created"], [("2", "10", "2024-01-01T00:00:00Z")], run=2)
    assert result.added_columns == ("size", "created") and not result.created
    assert [c for c, _ in columns_of(db, "evolve")] == ["id", "name", "_stackql_run_id", "_stackql_collected_at",
                                                       "size", "created"]
    assert dict(columns_of(db, "evolve"))["size"] == "bigint"
    assert rows(db, f"SELECT id, name, size FROM {S}.evolve") == [(2, None, 10)]
    again = write("evolve", ["id", "name"], [("3", "c")], run=3)  # fewer columns: the others stay, NULL
    assert again.added_columns == () and not again.created
    assert rows(db, f"SELECT id, name, size, created FROM {S}.evolve") == [(3, "c", None, None)]


def test_new_columns_in_history_and_append_modes(db):
    write("evh", ["id", "a"], [("1", "x")], mode="history", run=1, keys=["id"])
    result = write("evh", ["id", "a", "b"], [("1", "x", None), ("2", "y", "true")], mode="history", run=2,
                   keys=["id"])
    assert result.added_columns == ("b",)
    assert rows(db, f"SELECT id, a, b FROM {S}.evh WHERE _valid_to IS NULL ORDER BY id") == [
        (1, "x", None), (2, "y", True)]
    write("eva", ["id"], [("1",)], mode="append", run=1)
    write("eva", ["id", "note"], [("2", "n")], mode="append", run=2)
    assert rows(db, f"SELECT id, note FROM {S}.eva ORDER BY id") == [(1, None), (2, "n")]


@pytest.mark.parametrize("via", ["rows", "stream"])
@pytest.mark.parametrize("mode", ["replace", "append", "history"])
def test_a_value_that_no_longer_fits_names_the_column_and_leaves_the_table_untouched(db, mode, via, tmp_path):
    cols = ["id", "quantity", "name"]
    keys = ["id"] if mode == "history" else []
    write("fits", cols, [("1", "5", "a"), ("2", "6", "b")], mode=mode, run=1, keys=keys)
    before = snapshot(db, "fits")
    data = [(str(i), str(i), f"n{i}") for i in range(10, 5000)] + [("9", "1.5", "bad")]
    with pytest.raises(UserFacingError) as e:
        if via == "rows":
            write("fits", cols, data, mode=mode, run=2, keys=keys)
        else:
            write_streamed(tmp_path, "fits", cols, data, mode=mode, run=2, keys=keys)
    assert e.value.kind is ErrorKind.SCHEMA
    msg = e.value.message
    assert "'quantity'" in msg and "bigint" in msg and "'1.5'" in msg and "left unchanged" in msg
    assert "TYPE double precision" in msg and "row 4991" in msg
    assert snapshot(db, "fits") == before


def test_a_new_column_together_with_a_misfit_adds_nothing(db):
    write("fits2", ["id", "n"], [("1", "5")], run=1)
    before, cols_before = snapshot(db, "fits2"), columns_of(db, "fits2")
    with pytest.raises(UserFacingError, match="'n'"):
        write("fits2", ["id", "n", "extra"], [("2", "x", "e")], run=2)
    assert snapshot(db, "fits2") == before and columns_of(db, "fits2") == cols_before


def test_user_changes_to_column_types_are_respected(db):
    write("retyped", ["id", "n"], [("1", "5")], run=1)
    with db.begin() as c:
        c.execute(sa.text(f"ALTER TABLE {S}.retyped ALTER COLUMN n TYPE double precision"))
    write("retyped", ["id", "n"], [("1", "5.5")], run=2)
    assert rows(db, f"SELECT n FROM {S}.retyped") == [(5.5,)]


@pytest.mark.parametrize("via", ["rows", "stream"])
def test_nul_characters_are_an_error_naming_the_column(db, via, tmp_path):
    write("nul", ["id", "v"], [("1", "ok")], run=1)
    before = snapshot(db, "nul")
    data = [(str(i), "fine") for i in range(2, 3000)] + [("3000", "a\x00b")]
    with pytest.raises(UserFacingError) as e:
        if via == "rows":
            write("nul", ["id", "v"], data, run=2)
        else:
            write_streamed(tmp_path, "nul", ["id", "v"], data, run=2)
    assert "'v'" in e.value.message and "NUL" in e.value.message
    assert snapshot(db, "nul") == before


# ---------------------------------------------------------------------------------------------- COPY text fidelity


TRICKY = ["plain", "", "tab\there", "new\nline", "cr\rlf\r\n", "back\\slash", "\\N", "\\.", "N", "null", "NULL",
          "quote\"s'", "ünïcødé ☃ 𝄞", "trailing space ", "\\t literal", "semi;colon", "\x1f\x1e\x1d", "\u2028",
          "a" * 10_000]


def test_values_round_trip_exactly_through_copy(db):
    data = [(str(i), v, None if i % 3 else v) for i, v in enumerate(TRICKY)]
    write("fidelity", ["id", "v", "maybe"], data)
    got = rows(db, f"SELECT id, v, maybe FROM {S}.fidelity ORDER BY id")
    assert got == [(i, v, None if i % 3 else v) for i, v in enumerate(TRICKY)]


def test_large_batches_with_rare_special_values_round_trip(db):
    data = [(str(i), f"v{i}", None) for i in range(10_000)]
    data[4321] = ("4321", "has\ttab", "x")
    data[8765] = ("8765", None, "back\\slash")
    write("batches", ["id", "v", "w"], data)
    assert scalar(db, f"SELECT count(*) FROM {S}.batches") == 10_000
    assert rows(db, f"SELECT id, v, w FROM {S}.batches WHERE id IN (4321, 8765, 9999) ORDER BY id") == [
        (4321, "has\ttab", "x"), (8765, None, "back\\slash"), (9999, "v9999", None)]


def test_tricky_values_through_the_stream_land_exactly_as_through_rows(db, tmp_path):
    """The writer's JSON Lines fast path (pyarrow CSV) and its row path put the same values in the table."""
    data = [(str(i), v, None if i % 3 else v) for i, v in enumerate(TRICKY)] * 150  # several blocks' worth
    data = [(str(i), v, m) for i, (_, v, m) in enumerate(data)]
    result = write_streamed(tmp_path, "via_stream", ["id", "v", "maybe"], data)
    write("via_rows", ["id", "v", "maybe"], data)
    assert result.rows_written == len(data)
    q = "SELECT id, v, maybe, _stackql_run_id, _stackql_collected_at FROM {}.{} ORDER BY id"
    assert rows(db, q.format(S, "via_stream")) == rows(db, q.format(S, "via_rows"))


# ---------------------------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("name", [
    'quo"te', "semi;colon", "drop table x", "ünïcode", "Upper", "1starts_with_digit", "", "x" * 64, "pg_shadow",
    "pg_", "a-b", "tab\tname", "new\nline", "dot.ted", "a$b", " lead", None, 42,
])
def test_hostile_table_and_schema_names_are_refused(db, name):
    for schema, table in ((S, name), (name, "ok_table")):
        with pytest.raises(UserFacingError) as e:
            write(table, ["id"], [("1",)], schema=schema)
        assert e.value.kind is ErrorKind.VALIDATION
    assert scalar(db, "SELECT count(*) FROM pg_class WHERE relname = 'ok_table'") == 0


@pytest.mark.parametrize("schema", ["stackql_app", "information_schema", "public"])
def test_the_apps_own_schemas_are_not_targets(db, schema):
    with pytest.raises(UserFacingError, match="cannot receive inventory tables"):
        write("runs", ["id"], [("1",)], schema=schema)


@pytest.mark.parametrize("name", ["select", "user", "table", "order", "_", "x" * 63, "_leading", "a1_b2"])
def test_reserved_words_and_edge_names_are_valid_tables(db, name):
    write(name, ["id"], [("1",)])
    assert scalar(db, f'SELECT id FROM {S}."{name}"') == 1


def test_other_schemas_are_created_on_demand(db):
    write("t", ["id"], [("1",)], schema="team_inventory")
    assert scalar(db, 'SELECT id FROM team_inventory.t') == 1


HOSTILE_COLUMNS = ['quo"te', "semi; DROP TABLE x; --", "ünïcødé ☃", "select", "from", "Mixed Case", "sp ace",
                   "pg_catalog", "_stackql", "a.b", "$1", "%s", "back\\slash", "new\nline", "tab\t", "(paren)",
                   "x" * 63, "y" * 64, "é" * 40]


def test_hostile_column_names_round_trip(db):
    data = [tuple(f"v{i}" for i in range(len(HOSTILE_COLUMNS)))]
    result = write("hostile_cols", HOSTILE_COLUMNS, data)
    names = [c for c, _ in columns_of(db, "hostile_cols")][: len(HOSTILE_COLUMNS)]
    long_y = w.column_identifier("y" * 64)
    long_e = w.column_identifier("é" * 40)
    assert len(long_y.encode()) <= 63 and len(long_e.encode()) <= 63 and long_y.startswith("y" * 54)
    assert names == [*HOSTILE_COLUMNS[:-2], long_y, long_e]
    assert dict(result.column_names) == {"y" * 64: long_y, "é" * 40: long_e}
    assert scalar(db, f'SELECT "{long_y}" FROM {S}.hostile_cols') == f"v{len(HOSTILE_COLUMNS) - 2}"
    assert scalar(db, f"SELECT col_description('{S}.hostile_cols'::regclass, "
                      f"(SELECT attnum FROM pg_attribute WHERE attrelid = '{S}.hostile_cols'::regclass "
                      f"AND attname = :n))", n=long_y) == "stackql column: " + "y" * 64
    # A second run with the same hostile names writes into the same columns.
    write("hostile_cols", HOSTILE_COLUMNS, [tuple(f"w{i}" for i in range(len(HOSTILE_COLUMNS)))], run=2)
    assert scalar(db, f'SELECT "semi; DROP TABLE x; --" FROM {S}.hostile_cols') == "w1"


@pytest.mark.parametrize("name", HOSTILE_COLUMNS)
@pytest.mark.parametrize("mode", ["replace", "history"])
def test_each_hostile_column_name_as_data_and_as_key(db, name, mode):
    keys = [name] if mode == "history" else []
    write("one_hostile", [name, "v"], [("k1", "1"), ("k2", "2")], mode=mode, run=1, keys=keys)
    write("one_hostile", [name, "v"], [("k1", "1"), ("k2", "3")], mode=mode, run=2, keys=keys)
    column = w.column_identifier(name)
    current = " WHERE _valid_to IS NULL" if mode == "history" else ""
    got = rows(db, f'SELECT "{column.replace(chr(34), chr(34) * 2)}", v FROM {S}.one_hostile{current} ORDER BY 1')
    assert got == [("k1", 1), ("k2", 3)]


def test_hostile_column_names_in_history_keys(db):
    cols = ['key "1"', "naïve; value"]
    write("hostile_hist", cols, [("a", "1"), ("b", "2")], mode="history", run=1, keys=['key "1"'])
    result = write("hostile_hist", cols, [("a", "1"), ("b", "3")], mode="history", run=2, keys=['key "1"'])
    assert result.history.opened == 1 and result.history.closed == 1


@pytest.mark.parametrize("columns,needle", [
    (["", "x"], "without a name"),
    (["a\x00b"], "NUL"),
    (["z" * 70 + "1", "z" * 70 + "1"], "share"),
])
def test_unusable_column_names_are_refused(db, columns, needle):
    with pytest.raises(UserFacingError, match=needle):
        write("badcols", columns, [tuple("v" for _ in columns)])


# ---------------------------------------------------------------------------------------------- views


def _make_views(db):
    with db.begin() as c:
        c.execute(sa.text(f"CREATE VIEW {S}.v_big AS SELECT id, name FROM {S}.base WHERE id > 1"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_count AS SELECT count(*) AS n, max(name) AS top "
                          f"FROM {S}.base"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_ids AS SELECT id, name FROM {S}.base"))
        c.execute(sa.text(f"CREATE UNIQUE INDEX mv_ids_id ON {S}.mv_ids (id)"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_on_view AS SELECT count(*) AS n FROM {S}.v_big"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_on_mv AS SELECT n * 10 AS n10 FROM {S}.mv_count"))
        c.execute(sa.text("CREATE SCHEMA reports"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW reports.mv_other AS SELECT sum(id) AS s FROM {S}.base "
                          "WITH NO DATA"))


def test_views_and_materialized_views_survive_replace_runs_and_are_refreshed(db):
    write("base", ["id", "name"], [("1", "a"), ("2", "b")], run=1)
    _make_views(db)
    found = w.dependants(S, "base")
    assert [(d.qualified, d.kind, d.depth) for d in found] == [
        ("reports.mv_other", "materialized view", 1), (f"{S}.mv_count", "materialized view", 1),
        (f"{S}.mv_ids", "materialized view", 1), (f"{S}.v_big", "view", 1),
        (f"{S}.mv_on_mv", "materialized view", 2), (f"{S}.mv_on_view", "materialized view", 2)]
    oid = scalar(db, f"SELECT '{S}.base'::regclass::oid")
    for run, data in ((2, [("2", "b"), ("3", "c"), ("4", "d")]), (3, [("5", "e")])):
        result, refresh = w.write(S, "base", ["id", "name"], iter(data), mode="replace", run_id=run,
                                  collected_at=at(run))
        assert set(refresh.refreshed) == {f"{S}.mv_count", f"{S}.mv_ids", f"{S}.mv_on_view", f"{S}.mv_on_mv",
                                          "reports.mv_other"}
        assert refresh.concurrently == (f"{S}.mv_ids",)
        assert refresh.failed == ()
        assert scalar(db, f"SELECT n FROM {S}.mv_count") == len(data)
        assert scalar(db, f"SELECT n10 FROM {S}.mv_on_mv") == 10 * len(data)
        assert rows(db, f"SELECT id FROM {S}.mv_ids ORDER BY id") == [(int(i),) for i, _ in data]
        assert scalar(db, f"SELECT n FROM {S}.mv_on_view") == len([i for i, _ in data if int(i) > 1])
        assert rows(db, f"SELECT id, name FROM {S}.v_big ORDER BY id") == [(int(i), n) for i, n in data if
                                                                             int(i) > 1]
        assert scalar(db, "SELECT s FROM reports.mv_other") == sum(int(i) for i, _ in data)
    assert scalar(db, f"SELECT '{S}.base'::regclass::oid") == oid  # the same table, never dropped


def test_a_failing_refresh_is_reported_after_the_write(db):
    write("base2", ["id"], [("1",)], run=1)
    with db.begin() as c:
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_div AS SELECT 10 / (id - 2) AS q FROM {S}.base2"))
    result, refresh = w.write(S, "base2", ["id"], iter([("2",)]), mode="replace", run_id=2, collected_at=at(2))
    assert result.rows_written == 1 and refresh.refreshed == ()
    assert refresh.failed[0][0] == f"{S}.mv_div" and "division by zero" in refresh.failed[0][1]
    with pytest.raises(UserFacingError, match="was written, but refreshing"):
        refresh.raise_for_failures(f"{S}.base2")
    assert scalar(db, f"SELECT id FROM {S}.base2") == 2


def test_manual_refresh_of_one_materialized_view_needs_an_editor(db, monkeypatch):
    from stackql_inventory.config import get_settings
    from stackql_inventory.services.identity import Identity

    write("base3", ["id"], [("1",)], run=1)
    with db.begin() as c:
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv3 AS SELECT count(*) AS n FROM {S}.base3"))
    write("base3", ["id"], [("1",), ("2",)], run=2)
    with db.begin() as c:
        c.execute(sa.text(f"INSERT INTO {S}.base3 (id, _stackql_run_id, _stackql_collected_at) VALUES (9, 2, now())"))
    editor = Identity("ed@example.com", "Ed", "proxy")
    assert w.refresh_materialized_view(editor, S, "mv3").refreshed == (f"{S}.mv3",)
    assert scalar(db, f"SELECT n FROM {S}.mv3") == 3
    monkeypatch.setenv("STACKQL_INVENTORY_EDITORS", "someone-else@example.com")
    get_settings.cache_clear()
    with pytest.raises(UserFacingError) as e:
        w.refresh_materialized_view(editor, S, "mv3")
    assert e.value.kind is ErrorKind.PERMISSION
    monkeypatch.delenv("STACKQL_INVENTORY_EDITORS")
    get_settings.cache_clear()
    with pytest.raises(UserFacingError) as e:
        w.refresh_materialized_view(editor, S, "nope")
    assert e.value.kind is ErrorKind.NOT_FOUND


# ---------------------------------------------------------------------------------------------- provenance


def test_provenance_comment(db):
    prov = w.Provenance(query_name="EC2 instances", query_id=3, schedule_id=7, cron="0 */6 * * *",
                        timezone="Europe/Paris")
    write("prov", ["id"], [("1",), ("2",)], run=42, provenance=prov)
    comment = scalar(db, f"SELECT obj_description('{S}.prov'::regclass, 'pg_class')")
    assert "Source query: EC2 instances (query 3)" in comment
    assert "Schedule: 7, cron 0 */6 * * * (Europe/Paris)" in comment
    assert "Write mode: replace" in comment
    assert f"Last refresh: {at(42).isoformat()} by run 42 (2 rows)" in comment
    write("prov_h", ["id"], [("1",)], run=1, mode="history", keys=["id"],
          provenance=w.Provenance(query_name="it's \"quoted\"; --"))
    comment = scalar(db, f"SELECT obj_description('{S}.prov_h'::regclass, 'pg_class')")
    assert "it's \"quoted\"; --" in comment and "Write mode: history (key: id)" in comment
    assert "Schedule: none (one-off run)" in comment


# ---------------------------------------------------------------------------------------------- atomicity & locks


def test_a_stream_that_fails_mid_copy_leaves_the_table_as_it_was(db, fake_stackql):
    write("items", ["item_id", "name"], [("keep-1", "old"), ("keep-2", "old")], run=1)
    before = snapshot(db, "items")
    with w.open_target(S, "items") as target:
        with engine.stream(bulk_query(10_000, extra_where="fail_at = 7000", columns=("item_id", "name")),
                           {}) as s:
            with pytest.raises(UserFacingError) as e:
                target.write(s.columns, s.rows, mode="replace", run_id=2, collected_at=at(2))
            consumed = s.row_count
    assert "503" in e.value.message
    assert consumed >= 4000  # rows had reached COPY before stackql failed
    assert snapshot(db, "items") == before


def test_the_advisory_lock_is_per_target_and_released(db):
    write("locked", ["id"], [("1",)])
    with w.open_target(S, "locked"):
        with pytest.raises(w.TargetBusy) as e:
            with w.open_target(S, "locked"):
                pass
        assert e.value.kind is ErrorKind.CONFLICT and f"{S}.locked" in e.value.message
        with w.open_target(S, "other_table"):
            pass
    with w.open_target(S, "locked"):
        pass
    assert w.lock_key(S, "a") != w.lock_key(S, "b") and w.lock_key(S, "a") != w.lock_key("other", "a")


def test_a_target_can_be_reopened_at_once(db):
    # The lock is released before the session closes: the next run never finds a stale holder.
    for run in range(1, 31):
        with w.open_target(S, "again") as target:
            target.write(["id"], iter([(str(run),)]), mode="replace", run_id=run, collected_at=at(run))
    assert scalar(db, f"SELECT id FROM {S}.again") == 30
    assert scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


def test_a_waiting_writer_runs_after_the_holder(db):
    write("queue", ["id"], [("0",)], mode="append", run=1)
    order = []
    holder = w.open_target(S, "queue")
    target = holder.__enter__()

    def second():
        w.write(S, "queue", ["id"], iter([("2",)]), mode="append", run_id=3, collected_at=at(3), wait=True)
        order.append("second")

    t = threading.Thread(target=second)
    t.start()
    t.join(0.5)
    assert t.is_alive()  # waiting on the lock
    target.write(["id"], iter([("1",)]), mode="append", run_id=2, collected_at=at(2))
    order.append("first")
    holder.__exit__(None, None, None)
    t.join(10)
    assert order == ["first", "second"]
    assert rows(db, f"SELECT id FROM {S}.queue ORDER BY _stackql_run_id") == [(0,), (1,), (2,)]


def test_readers_never_see_an_empty_or_mixed_table_during_replace_runs(db, pg):
    write("busy", ["id", "v"], [(str(i), "0") for i in range(3000)], run=1)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    reader_engine = sa.create_engine(pg.url(db.info_database_name))

    def reader():
        try:
            with reader_engine.connect() as c:
                while not stop.is_set():
                    seen.append(tuple(c.execute(sa.text(
                        f"SELECT count(*), count(DISTINCT _stackql_run_id) FROM {S}.busy")).one()))
                    c.rollback()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for run in range(2, 52):
            write("busy", ["id", "v"], [(str(i), str(run)) for i in range(3000)], run=run)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        reader_engine.dispose()
    assert not errors
    assert len(seen) > 50
    assert set(seen) == {(3000, 1)}
    assert rows(db, f"SELECT DISTINCT v, _stackql_run_id FROM {S}.busy") == [(51, 51)]
