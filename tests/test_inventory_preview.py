"""Preview paging on a real PostgreSQL: keyset by unique key and by ctid windows, filters, quoting, CSV export."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from stackql_inventory.services import inventory_preview as preview
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.inventory_preview import Filter
from tests.support import inventory as fx


def _walk(table: str, *, page_size: int, between_pages=None, flt: Filter | None = None) -> tuple[list, list]:
    """All pages from the first; calls `between_pages(n)` after page n. Returns (first column values, pages)."""
    seen, pages, after, since, n = [], [], None, None, 0
    while True:
        page = preview.fetch_page(table, after=after, flt=flt, page_size=page_size, since=since)
        n += 1
        pages.append(page)
        seen += [r[0] for r in page.rows]
        since = since or page.version
        if between_pages:
            between_pages(n)
        if not page.has_next:
            return seen, pages
        after = page.next_cursor


@pytest.mark.parametrize("unique_key", [True, False], ids=["unique-key", "ctid"])
def test_pages_have_no_duplicates_or_gaps_while_rows_are_appended(db: sa.Engine, unique_key: bool) -> None:
    with db.begin() as c:
        fx.create_table(c, "growing", "id int NOT NULL, name text, tags text")
        c.execute(sa.text("INSERT INTO stackql_inventory.growing SELECT g, 'n' || g, '{\"k\": ' || g || '}', 1, now() "
                          "FROM generate_series(1, 1234) g"))
        if unique_key:
            c.execute(sa.text("CREATE UNIQUE INDEX growing_id ON stackql_inventory.growing (id)"))
    original = set(range(1, 1235))
    next_id = [100_000]

    def append(n: int) -> None:
        if n % 3 == 0:  # a run appends rows while the user pages
            with db.begin() as c:
                c.execute(sa.text("INSERT INTO stackql_inventory.growing SELECT g, 'new', '{}', 2, now() "
                                  "FROM generate_series(:a, :b) g"), {"a": next_id[0], "b": next_id[0] + 60})
            next_id[0] += 61

    seen, pages = _walk("growing", page_size=50, between_pages=append)
    ids = [int(v) for v in seen]
    assert len(ids) == len(set(ids)), "a row was shown twice"
    assert original <= set(ids), f"rows skipped: {sorted(original - set(ids))[:10]}"
    assert all(len(p.rows) == 50 for p in pages[:-1])
    assert all(p.warning == "" for p in pages)
    assert pages[0].plan.kind == ("key" if unique_key else "ctid")
    if unique_key:
        assert ids == sorted(ids)
        assert pages[0].plan.key == ("id",)


def test_page_n_resumes_from_its_cursor_with_the_same_rows(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.create_table(c, "t", "id int")
        c.execute(sa.text("INSERT INTO stackql_inventory.t SELECT g, 1, now() FROM generate_series(1, 500) g"))
    seen, pages = _walk("t", page_size=40)
    again = preview.fetch_page("t", after=pages[4].next_cursor, page_size=40)
    assert again.rows == pages[5].rows
    assert [int(v) for v in seen] == list(range(1, 501))  # insert order = physical order here


def test_composite_primary_key_is_used_and_null_keys_are_not(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.ck (acct text, id int, v text, PRIMARY KEY (acct, id))"))
        c.execute(sa.text("INSERT INTO stackql_inventory.ck SELECT 'a' || (g % 3), g, 'x' FROM generate_series(1, 90) g"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.nullable (id int UNIQUE, v text)"))
        c.execute(sa.text("INSERT INTO stackql_inventory.nullable VALUES (1, 'a'), (NULL, 'b'), (NULL, 'c')"))
    seen, pages = _walk("ck", page_size=20)
    assert pages[0].plan.key == ("acct", "id") and len(seen) == 90
    keys = [(r[0], int(r[1])) for p in pages for r in p.rows]
    assert keys == sorted(keys)
    # A unique index over a nullable column would skip NULL rows: physical order instead.
    seen, pages = _walk("nullable", page_size=2)
    assert pages[0].plan.kind == "ctid" and sorted(v or "" for v in seen) == ["", "", "1"]


def test_ctid_paging_warns_when_rows_move_or_the_table_is_rewritten(db: sa.Engine, pg) -> None:
    with db.begin() as c:
        fx.create_table(c, "hist", "id int, state text")
        c.execute(sa.text("INSERT INTO stackql_inventory.hist SELECT g, 'a', 1, now() FROM generate_series(1, 300) g"))
    first = preview.fetch_page("hist", page_size=50)
    assert first.plan.kind == "ctid"
    # A history run closes versions with UPDATE: the rows move. (Its statistics flush when its backend exits.)
    writer = sa.create_engine(db.url, poolclass=NullPool)
    with writer.begin() as c:
        c.execute(sa.text("UPDATE stackql_inventory.hist SET state = 'b' WHERE id <= 10"))
    writer.dispose()
    deadline, warning = time.monotonic() + 5, ""
    while not warning and time.monotonic() < deadline:
        warning = preview.fetch_page("hist", after=first.next_cursor, page_size=50, since=first.version).warning
        time.sleep(0.1)
    assert "updated or deleted" in warning
    # A replace run that truncates and reloads rewrites the table (new relfilenode).
    with db.begin() as c:
        c.execute(sa.text("TRUNCATE stackql_inventory.hist"))
        c.execute(sa.text("INSERT INTO stackql_inventory.hist SELECT g, 'c', 2, now() FROM generate_series(1, 5) g"))
    page = preview.fetch_page("hist", page_size=50, since=first.version)
    assert "rewrote this table" in page.warning and len(page.rows) == 5


def test_filters_bind_values_and_check_columns(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.create_table(c, "f", "name text, note text, n int")
        fx.insert_rows(c, "f", [
            {"name": "100%_done", "note": None, "n": 1}, {"name": "100x done", "note": "a", "n": 2},
            {"name": "Robert'); DROP TABLE stackql_inventory.f;--", "note": "b", "n": 3},
        ], 1)
    names = lambda flt: [r[0] for r in preview.fetch_page("f", flt=flt).rows]  # noqa: E731
    assert names(Filter("name", "contains", "%_")) == ["100%_done"]          # wildcards are literal
    assert names(Filter("name", "contains", "DONE")) == ["100%_done", "100x done"]
    assert names(Filter("n", "equals", "2")) == ["100x done"]
    assert names(Filter("note", "is_null")) == ["100%_done"]
    assert len(names(Filter("note", "not_null"))) == 2
    assert names(Filter("name", "equals", "Robert'); DROP TABLE stackql_inventory.f;--")) == [
        "Robert'); DROP TABLE stackql_inventory.f;--"]
    for bad in (Filter('name" = name; DROP TABLE stackql_inventory.f; --', "equals", "x"),
                Filter("missing", "contains", "x")):
        with pytest.raises(UserFacingError) as e:
            preview.fetch_page("f", flt=bad)
        assert e.value.kind is ErrorKind.VALIDATION and "no column named" in e.value.message
    with pytest.raises(UserFacingError) as e:
        preview.fetch_page("f", flt=Filter("name", "regex", "x"))
    assert e.value.kind is ErrorKind.VALIDATION
    with db.connect() as c:  # still there
        assert c.execute(sa.text("SELECT count(*) FROM stackql_inventory.f")).scalar() == 3


def test_odd_identifiers_are_quoted(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text('CREATE TABLE stackql_inventory."Weird ""Name""; x" ("Col A" text, "sel""ect" int, '
                          '"order" int PRIMARY KEY)'))
        c.execute(sa.text('INSERT INTO stackql_inventory."Weird ""Name""; x" VALUES (\'a\', 1, 2), (\'b\', 3, 1)'))
    page = preview.fetch_page('Weird "Name"; x', flt=Filter('sel"ect', "equals", "1"))
    assert [c.name for c in page.columns] == ["Col A", 'sel"ect', "order"]
    assert page.rows == [["a", "1", "2"]] and page.plan.key == ("order",)
    assert [r[0] for r in preview.fetch_page('Weird "Name"; x').rows] == ["b", "a"]


def test_values_are_text_and_json_is_readable(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.j (t text, jb jsonb, at timestamptz, ok boolean, arr text[])"))
        c.execute(sa.text("""INSERT INTO stackql_inventory.j VALUES ('{"a": [1, 2]}', '{"b": {"c": null}}',
                             '2026-11-20 09:00+00', true, ARRAY['x','y']), ('plain', NULL, NULL, NULL, NULL)"""))
    page = preview.fetch_page("j")
    assert page.rows[0] == ['{"a": [1, 2]}', '{"b": {"c": null}}', "2026-11-20 09:00:00+00", "true", "{x,y}"]
    assert page.rows[1] == ["plain", None, None, None, None]
    types = {c.name: c.type for c in page.columns}
    assert preview.pretty_json(page.rows[0][0]) == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert preview.pretty_json(page.rows[0][1], types["jb"]).startswith('{\n  "b"')
    assert preview.pretty_json("plain") is None and preview.pretty_json("{not json}") is None
    assert preview.pretty_json("42", "jsonb") is None and preview.pretty_json(None) is None


def test_missing_table_page_size_and_unpopulated_view(db: sa.Engine) -> None:
    with pytest.raises(UserFacingError) as e:
        preview.fetch_page("nope")
    assert e.value.kind is ErrorKind.NOT_FOUND
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.x (a int)"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.mv AS SELECT a FROM stackql_inventory.x WITH NO DATA"))
    with pytest.raises(UserFacingError) as e:
        preview.fetch_page("x", page_size=0)
    assert e.value.kind is ErrorKind.VALIDATION
    with pytest.raises(UserFacingError) as e:
        preview.fetch_page("mv")
    assert "not been populated" in e.value.message


def test_a_table_locked_by_a_run_gives_a_message_not_a_hang(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview, "LOCK_WAIT_MS", 200)
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.busy AS SELECT 1 AS a"))
    holder = db.connect()
    tx = holder.begin()
    holder.execute(sa.text("LOCK TABLE stackql_inventory.busy IN ACCESS EXCLUSIVE MODE"))
    try:
        with pytest.raises(UserFacingError) as e:
            preview.fetch_page("busy")
        assert e.value.kind is ErrorKind.CONFLICT and "rewriting busy" in e.value.message
    finally:
        tx.rollback()
        holder.close()
    assert preview.fetch_page("busy").rows == [["1"]]


# ------------------------------------------------------------------ CSV export

def test_export_streams_the_filtered_table_as_csv(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.seed_append(c)
    ticket = preview.prepare_export("github_repos", Filter("repo", "equals", "a"))
    assert ticket.url.startswith(preview.EXPORT_ROUTE + "/") and ticket.filename.endswith(".csv")
    body = b"".join(preview.stream_csv(preview.redeem_export(ticket.token))).decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["repo", "stars", "meta", "_stackql_run_id", "_stackql_collected_at"]
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == [("a", "1", '{"lang": "py"}'), ("a", "2", '{"lang": "py"}')]


def test_export_tickets_expire_and_bad_requests_are_refused(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.e (a int)"))
    now = datetime.now(UTC)
    ticket = preview.prepare_export("e", now=now)
    assert preview.redeem_export(ticket.token, now=now + timedelta(minutes=5)).table == "e"
    for token, at in ((ticket.token, now + preview.EXPORT_TTL), ("made-up", now)):
        with pytest.raises(UserFacingError) as e:
            preview.redeem_export(token, now=at)
        assert e.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(UserFacingError) as e:
        preview.prepare_export("missing")
    assert e.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(UserFacingError) as e:
        preview.prepare_export("e", Filter("zzz", "equals", "1"))
    assert e.value.kind is ErrorKind.VALIDATION


def test_a_big_export_streams_in_chunks_and_stops_when_the_reader_goes_away(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.wide AS SELECT g AS id, repeat('x', 200) AS pad "
                          "FROM generate_series(1, 60000) g"))
    stream = preview.stream_csv(preview.prepare_export("wide"))
    first = next(stream)
    assert 256 * 1024 <= len(first) < 2 * 1024 * 1024  # chunks, not the whole 12 MB
    stream.close()  # the browser cancelled: the COPY stops and its connection is discarded
    workers = [t for t in __import__("threading").enumerate() if t.name == "export-wide"]
    assert not workers
    total = sum(len(chunk) for chunk in preview.stream_csv(preview.prepare_export("wide")))
    assert total > 60000 * 200
    with db.connect() as c:  # the pool is healthy afterwards
        assert c.execute(sa.text("SELECT 1")).scalar() == 1


def test_export_route_streams_csv_with_a_download_name(db: sa.Engine) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from stackql_inventory.components import inventory_export

    with db.begin() as c:
        fx.seed_append(c)
    client = TestClient(Starlette(routes=inventory_export.routes()))
    ticket = preview.prepare_export("github_repos")
    r = client.get(ticket.url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="{ticket.filename}"'
    assert r.text.count("\n") == 5
    missing = client.get(preview.EXPORT_ROUTE + "/not-a-ticket")
    assert missing.status_code == 404 and "expired" in missing.text


def test_history_tables_can_show_only_current_versions(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.seed_history(c)
        fx.seed_append(c)
    every = preview.fetch_page("aws_ec2_history")
    assert len(every.rows) == 8 and not every.current_only
    current = preview.fetch_page("aws_ec2_history", current_only=True)
    assert current.current_only
    assert sorted((r[0], r[2]) for r in current.rows) == [("i-1", "running"), ("i-3", "running"), ("i-4", "running")]
    ticket = preview.prepare_export("aws_ec2_history", current_only=True)
    assert b"".join(preview.stream_csv(ticket)).count(b"\n") == 4
    # Not a history table: the switch does not apply.
    append = preview.fetch_page("github_repos", current_only=True)
    assert len(append.rows) == 4 and not append.current_only
