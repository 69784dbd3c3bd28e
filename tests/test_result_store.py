"""The result store: windows, sorting, filtering, exports, compaction, per-session LRU and the memory cap."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import orjson
import pytest

from stackql_inventory.services import result_store
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.result_store import ResultStore, infer_type

COLUMNS = ["id", "name", "qty", "active", "created", "attrs"]


def make_rows(n: int) -> list[tuple[str | None, ...]]:
    rows = []
    for i in range(n):
        rows.append((
            f"r-{i:05d}",
            None if i % 10 == 3 else f"Name {i % 7}",
            str((i * 37) % 100),
            "true" if i % 2 else "false",
            f"2026-01-{1 + i % 28:02d}T10:00:00Z",
            orjson.dumps({"zone": f"z{i % 3}", "rank": i, "tags": ["a", "b"]}).decode(),
        ))
    return rows


@pytest.fixture(params=["tuples", "compacted"])
def stored(request):
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=60)
    res = store.put(session="s1", owner="ana", columns=COLUMNS, rows=make_rows(1000), statement="SELECT …")
    if request.param == "compacted":
        res.compact()
        assert res.compacted
    return res


def window_rows(res, *args, **kwargs):
    w = res.window(*args, **kwargs)
    data = json.loads(w.payload)
    assert data["total"] == w.total and len(data["rows"]) == w.rows
    return data["rows"], data["total"]


def test_types_are_inferred_per_column(stored):
    assert stored.types == ("text", "text", "number", "boolean", "timestamp", "json")


@pytest.mark.parametrize(("values", "expected"), [
    (["1", "2.5", "-3e4", None], "number"),
    (["true", "FALSE"], "boolean"),
    (['{"a": 1}', "[1, 2]"], "json"),
    (["{not json"], "text"),
    (["2026-01-01T00:00:00Z", "2026-01-01 10:00"], "timestamp"),
    ([None, None], "text"),
    (["1", "one"], "text"),
    (["007x"], "text"),
])
def test_infer_type(values, expected):
    assert infer_type(values) == expected


def test_window_without_sort_or_filter_keeps_the_engine_order(stored):
    rows, total = window_rows(stored, 200, 400)
    assert total == 1000
    assert [r[0] for r in rows] == [f"r-{i:05d}" for i in range(200, 400)]
    assert rows[3][1] is None  # NULL stays null, not "None"


def test_window_is_capped_and_validated(stored):
    rows, _ = window_rows(stored, 0, 50_000)
    assert len(rows) == result_store.MAX_WINDOW
    assert window_rows(stored, 990, 2000)[0][-1][0] == "r-00999"
    assert window_rows(stored, 5000, 5100) == ([], 1000)
    for bad in [(-1, 10), (10, 5), ("0", 10)]:
        with pytest.raises(UserFacingError) as e:
            stored.window(*bad)
        assert e.value.kind is ErrorKind.VALIDATION


def test_numbers_sort_numerically_with_nulls_last(stored):
    rows, _ = window_rows(stored, 0, 1000, sort=[{"colId": "2", "sort": "desc"}])
    qty = [int(r[2]) for r in rows]
    assert qty == sorted(qty, reverse=True) and qty[0] == 99
    asc, _ = window_rows(stored, 0, 1000, sort=[{"colId": "1", "sort": "asc"}])
    desc, _ = window_rows(stored, 0, 1000, sort=[{"colId": "1", "sort": "desc"}])
    assert asc[-1][1] is None and desc[-1][1] is None and asc[0][1] == "Name 0" and desc[0][1] == "Name 6"


def test_multi_column_sort_is_stable(stored):
    rows, _ = window_rows(stored, 0, 1000, sort=[{"colId": "3", "sort": "asc"}, {"colId": "2", "sort": "desc"}])
    keys = [(r[3], -int(r[2])) for r in rows]
    assert keys == sorted(keys)


@pytest.mark.parametrize(("model", "check"), [
    ({"filterType": "text", "type": "contains", "filter": "ame 3"}, lambda r: r[1] == "Name 3"),
    ({"filterType": "text", "type": "notContains", "filter": "name"}, lambda r: r[1] is None),
    ({"filterType": "text", "type": "equals", "filter": "NAME 2"}, lambda r: r[1] == "Name 2"),
    ({"filterType": "text", "type": "startsWith", "filter": "na"}, lambda r: r[1] is not None),
    ({"filterType": "text", "type": "blank"}, lambda r: r[1] is None),
    ({"filterType": "text", "type": "notBlank"}, lambda r: r[1] is not None),
    ({"filterType": "text", "operator": "OR", "conditions": [
        {"filterType": "text", "type": "endsWith", "filter": "1"},
        {"filterType": "text", "type": "endsWith", "filter": "2"}]}, lambda r: r[1] in ("Name 1", "Name 2")),
])
def test_text_filters(stored, model, check):
    rows, total = window_rows(stored, 0, 1000, filters={"1": model})
    everything = make_rows(1000)
    assert total == sum(1 for r in everything if check(r)) > 0
    assert all(check(tuple(r)) for r in rows)


@pytest.mark.parametrize(("model", "check"), [
    ({"filterType": "number", "type": "greaterThan", "filter": 90}, lambda q: q > 90),
    ({"filterType": "number", "type": "lessThanOrEqual", "filter": "5"}, lambda q: q <= 5),
    ({"filterType": "number", "type": "inRange", "filter": 10, "filterTo": 12}, lambda q: 10 <= q <= 12),
    ({"filterType": "number", "type": "equals", "filter": 37}, lambda q: q == 37),
    ({"filterType": "number", "type": "notEqual", "filter": 37}, lambda q: q != 37),
])
def test_number_filters(stored, model, check):
    rows, total = window_rows(stored, 0, 1000, filters={"2": model})
    assert total == sum(1 for r in make_rows(1000) if check(int(r[2]))) > 0
    assert all(check(int(r[2])) for r in rows)


def test_filter_and_sort_together_and_cached(stored):
    model = {"2": {"filterType": "number", "type": "lessThan", "filter": 10}}
    sort = [{"colId": "0", "sort": "desc"}]
    first, total = window_rows(stored, 0, 5, sort=sort, filters=model)
    assert total == sum(1 for r in make_rows(1000) if int(r[2]) < 10)
    assert [r[0] for r in first] == sorted((r[0] for r in make_rows(1000) if int(r[2]) < 10), reverse=True)[:5]
    assert len(stored._views) == 1
    window_rows(stored, 5, 10, sort=sort, filters=model)
    assert len(stored._views) == 1  # the ordering is reused for the next block


@pytest.mark.parametrize(("sort", "filters"), [
    ("desc", None),
    ([{"colId": "99", "sort": "asc"}], None),
    ([{"colId": "1", "sort": "sideways"}], None),
    (None, {"1": {"filterType": "text", "type": "regex", "filter": ".*"}}),
    (None, {"1": {"filterType": "text", "type": "contains", "filter": 5}}),
    (None, {"2": {"filterType": "number", "type": "greaterThan", "filter": "many"}}),
    (None, {"2": {"filterType": "date", "type": "equals", "filter": "x"}}),
    (None, {"nope": {"filterType": "text", "type": "contains", "filter": "x"}}),
    (None, ["not", "a", "model"]),
])
def test_bad_models_are_refused_with_a_message(stored, sort, filters):
    with pytest.raises(UserFacingError) as e:
        stored.window(0, 10, sort=sort, filters=filters)
    assert e.value.kind is ErrorKind.VALIDATION and "retry" in e.value.message


def test_csv_export_is_the_whole_result(stored):
    text = b"".join(stored.iter_csv(chunk_rows=300)).decode()
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == COLUMNS
    assert len(parsed) == 1001
    assert parsed[1 + 3][1] == ""  # NULL as an empty field
    assert parsed[1 + 999] == ["" if v is None else v for v in make_rows(1000)[999]]


def test_json_export_embeds_json_cells(stored):
    data = json.loads(b"".join(stored.iter_json(chunk_rows=300)))
    assert len(data) == 1000
    assert data[5] == {"id": "r-00005", "name": "Name 5", "qty": "85", "active": "true",
                       "created": "2026-01-06T10:00:00Z", "attrs": {"zone": "z2", "rank": 5, "tags": ["a", "b"]}}
    assert data[3]["name"] is None


def test_exports_of_empty_results_and_duplicate_names():
    store = ResultStore(max_bytes=1 << 20, per_session=2, compact_delay_s=None)
    empty = store.put(session="s", owner="u", columns=["a", "b"], rows=[])
    assert b"".join(empty.iter_csv()) == b"a,b\r\n"
    assert json.loads(b"".join(empty.iter_json())) == []
    dup = store.put(session="s", owner="u", columns=["x", "x"], rows=[("1", "2")])
    assert json.loads(b"".join(dup.iter_json())) == [{"x": "1", "x_2": "2"}]


def test_rows_and_head_decode_either_form():
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=60)
    res = store.put(session="s", owner="u", columns=COLUMNS, rows=make_rows(50))
    before = res.head(3)
    res.compact()
    assert res.head(3) == before == make_rows(3)
    assert res.rows(48) == make_rows(50)[48:]


def test_compaction_shrinks_memory_and_happens_in_the_background():
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=0.05)
    rows = make_rows(5000)
    res = store.put(session="s", owner="u", columns=COLUMNS, rows=rows)
    estimate = store.stats().bytes
    deadline = time.monotonic() + 10
    while not res.compacted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert res.compacted
    actual = sum(len(orjson.dumps(r)) for r in rows) + 41 * len(rows)
    assert store.stats().bytes == pytest.approx(actual, rel=0.02)
    assert estimate == pytest.approx(store.stats().bytes, rel=0.1)  # the upfront estimate was close


def test_accounted_bytes_match_what_python_holds():
    import gc
    import tracemalloc

    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=60)
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        rows = make_rows(20_000)
        as_tuples = tracemalloc.get_traced_memory()[0] - base
        res = store.put(session="s", owner="u", columns=COLUMNS, rows=rows)
        del rows
        res.compact()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held == pytest.approx(res.nbytes, rel=0.25)
    assert held < as_tuples * 0.6  # compacted rows take well under the engine's tuples


def test_windows_stay_correct_while_compaction_runs():
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=60)
    res = store.put(session="s", owner="u", columns=COLUMNS, rows=make_rows(20_000))
    errors = []

    def read() -> None:
        for i in range(200):
            rows, total = window_rows(res, i * 10, i * 10 + 10, sort=[{"colId": "0", "sort": "asc"}])
            if total != 20_000 or rows[0][0] != f"r-{i * 10:05d}":
                errors.append((i, rows[0][0]))

    reader = threading.Thread(target=read)
    reader.start()
    res.compact()
    reader.join()
    assert errors == []


def test_ids_are_unguessable_and_owners_checked():
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=None)
    a = store.put(session="s1", owner="ana", columns=["x"], rows=[("1",)])
    b = store.put(session="s1", owner="ana", columns=["x"], rows=[("1",)])
    assert a.id != b.id and len(a.id) >= 24
    assert store.get(a.id, owner="ana") is a
    for bad in [(a.id, "bob"), ("nope", None), (a.id[:-1], "ana"), (None, None)]:
        with pytest.raises(UserFacingError) as e:
            store.get(bad[0], owner=bad[1])
        assert e.value.kind is ErrorKind.NOT_FOUND and "run the query again" in e.value.message


def test_per_session_limit_evicts_that_sessions_oldest():
    store = ResultStore(max_bytes=1 << 30, per_session=2, compact_delay_s=None)
    s1 = [store.put(session="s1", owner="u", columns=["x"], rows=[(str(i),)]) for i in range(3)]
    other = store.put(session="s2", owner="u", columns=["x"], rows=[("z",)])
    with pytest.raises(UserFacingError):
        store.get(s1[0].id)
    assert store.get(s1[1].id) and store.get(s1[2].id) and store.get(other.id)
    assert store.stats().results == 3 and store.stats().sessions == 2


def test_memory_cap_evicts_least_recently_used_across_sessions():
    rows = make_rows(2000)
    one = ResultStore(max_bytes=1 << 30, per_session=9, compact_delay_s=None).put(
        session="x", owner="u", columns=COLUMNS, rows=rows).nbytes
    store = ResultStore(max_bytes=int(one * 2.5), per_session=9, compact_delay_s=None)
    a = store.put(session="s1", owner="u", columns=COLUMNS, rows=rows)
    b = store.put(session="s2", owner="u", columns=COLUMNS, rows=rows)
    store.get(a.id)  # a is now more recently used than b
    c = store.put(session="s3", owner="u", columns=COLUMNS, rows=rows)
    assert {r.id for r in (a, c)} == {store.get(a.id).id, store.get(c.id).id}
    with pytest.raises(UserFacingError):
        store.get(b.id)
    assert store.stats().bytes <= store.max_bytes


def test_a_result_larger_than_the_cap_is_kept_alone():
    store = ResultStore(max_bytes=1000, per_session=5, compact_delay_s=None)
    small = store.put(session="s", owner="u", columns=["x"], rows=[("1",)])
    big = store.put(session="s", owner="u", columns=COLUMNS, rows=make_rows(500))
    assert store.get(big.id) is big
    with pytest.raises(UserFacingError):
        store.get(small.id)


def test_drop_and_drop_session():
    store = ResultStore(max_bytes=1 << 30, per_session=5, compact_delay_s=None)
    a = store.put(session="s1", owner="u", columns=["x"], rows=[("1",)])
    b = store.put(session="s1", owner="u", columns=["x"], rows=[("2",)])
    c = store.put(session="s2", owner="u", columns=["x"], rows=[("3",)])
    store.drop(a.id)
    store.drop_session("s1")
    assert store.stats().results == 1 and store.get(c.id)
    with pytest.raises(UserFacingError):
        store.get(b.id)
    assert store.stats().bytes == c.nbytes


def test_a_session_is_required():
    store = ResultStore(max_bytes=1 << 20, per_session=1)
    with pytest.raises(UserFacingError) as e:
        store.put(session="", owner="u", columns=["x"], rows=[])
    assert "reload the page" in e.value.message


def test_process_store_is_sized_from_settings(monkeypatch):
    from stackql_inventory import config

    monkeypatch.setenv("STACKQL_INVENTORY_RESULT_CACHE_MB", "64")
    monkeypatch.setenv("STACKQL_INVENTORY_RESULTS_PER_SESSION", "7")
    config.get_settings.cache_clear()
    result_store.reset()
    try:
        store = result_store.get_store()
        assert store is result_store.get_store()
        assert (store.max_bytes, store.per_session) == (64 * 1024 * 1024, 7)
        res = store.put(session="s", owner="u", columns=["x"], rows=[("1",)])
        assert result_store.get(res.id, owner="u") is res
    finally:
        result_store.reset()
        config.get_settings.cache_clear()
