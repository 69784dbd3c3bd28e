"""Inventory catalogue on a real PostgreSQL: counts (exact vs planner estimate), freshness, metrics, ledger, locks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from stackql_inventory.services import inventory
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.inventory import EXACT_COUNT_MAX, RowCount, estimate_rows
from stackql_inventory.services.inventory_freshness import Freshness
from tests.support import inventory as fx

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _by_name() -> dict[str, inventory.InventoryTable]:
    return {t.name: t for t in inventory.catalogue(NOW).tables}


def _seq_tuples_read(engine: sa.Engine, table: str) -> int:
    """Rows read by sequential scans of `table`, once every other backend has flushed its statistics."""
    with engine.connect() as c:
        c.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return int(c.execute(sa.text(
            "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE schemaname = 'stackql_inventory' "
            "AND relname = :t"), {"t": table}).scalar_one())


def _flushed_seq_reads(engine: sa.Engine, table: str) -> int:
    # Backends flush their statistics when they exit: close the pool, then read them.
    engine.dispose()
    deadline = time.monotonic() + 5
    value = _seq_tuples_read(engine, table)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        again = _seq_tuples_read(engine, table)
        if again == value:
            return value
        value = again
    return value


def test_small_tables_are_counted_exactly_and_big_ones_estimated(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.small AS SELECT g AS id FROM generate_series(1, 1234) g"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.big AS SELECT g AS id FROM generate_series(1, 50000) g"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.unanalysed AS SELECT g AS id "
                          "FROM generate_series(1, 30000) g"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.empty (id int)"))
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("ANALYZE stackql_inventory.big"))
    reads_before = {t: _flushed_seq_reads(db, t) for t in ("big", "unanalysed", "small")}

    tables = _by_name()

    assert tables["small"].rows == RowCount(1234, exact=True)
    assert tables["small"].rows.text() == "1,234"
    assert tables["empty"].rows == RowCount(0, exact=True)
    big = tables["big"].rows
    assert not big.exact and big.text().startswith("≈ ")
    assert abs(big.value - 50_000) <= 2_500
    # Never analysed and above the threshold: the capped count stops at the cap and says "more than".
    assert tables["unanalysed"].rows == RowCount(EXACT_COUNT_MAX, lower_bound=True)
    assert tables["unanalysed"].rows.text() == f"> {EXACT_COUNT_MAX:,}"
    # What the list read: nothing of the big table, at most cap + 1 rows of the unanalysed one.
    assert _flushed_seq_reads(db, "big") - reads_before["big"] == 0
    assert _flushed_seq_reads(db, "unanalysed") - reads_before["unanalysed"] == EXACT_COUNT_MAX + 1
    assert _flushed_seq_reads(db, "small") - reads_before["small"] == 1234


def test_an_estimate_follows_the_table_growing_since_its_last_analyze(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.grows AS SELECT g AS id, md5(g::text) AS h "
                          "FROM generate_series(1, 20000) g"))
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("ANALYZE stackql_inventory.grows"))
    with db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_inventory.grows SELECT g, md5(g::text) FROM generate_series(1, 60000) g"))
    rows = _by_name()["grows"].rows
    # density from ANALYZE x the table's current size (as the planner does), not the stale 20,000
    assert not rows.exact and 64_000 <= rows.value <= 96_000


def test_a_stale_small_estimate_cannot_trigger_a_full_count(db: sa.Engine) -> None:
    # ANALYZE sees 10 fat rows (one per page); then 200,000 thin rows arrive: the planner-style estimate
    # (density x pages) is still far below the threshold, but the capped count stops at the cap.
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.was_small (id int, pad text)"))
        c.execute(sa.text("ALTER TABLE stackql_inventory.was_small ALTER COLUMN pad SET STORAGE PLAIN"))
        c.execute(sa.text("INSERT INTO stackql_inventory.was_small SELECT g, repeat('x', 7000) "
                          "FROM generate_series(1, 10) g"))
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("ANALYZE stackql_inventory.was_small"))
    with db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_inventory.was_small SELECT g, NULL FROM generate_series(1, 200000) g"))
    rows = _by_name()["was_small"].rows
    assert rows == RowCount(EXACT_COUNT_MAX, lower_bound=True)


@pytest.mark.parametrize(("reltuples", "relpages", "heap", "expected"), [
    (-1, 0, 0, None), (0, 0, 0, 0), (0, 0, 8192, None), (100, 1, 8192, 100), (100, 1, 8192 * 3, 300),
    (1_000_000, 10_000, 8192 * 10_000, 1_000_000),
])
def test_estimate_rows(reltuples: float, relpages: int, heap: int, expected: int | None) -> None:
    assert estimate_rows(reltuples, relpages, heap, 8192) == expected


def test_freshness_write_mode_schedule_and_metrics(db: sa.Engine) -> None:
    with db.begin() as c:
        fresh_q = fx.add_query(c, "buckets", "aws")
        fresh_s = fx.add_schedule(c, fresh_q, "fresh_t", cron="0 * * * *", mode="replace")
        fx.create_table(c, "fresh_t", "bucket text")
        fx.add_run(c, "fresh_t", started_at=NOW - timedelta(minutes=70), rows=3, schedule_id=fresh_s, query_id=fresh_q)
        stale_q = fx.add_query(c, "vms", "google")
        stale_s = fx.add_schedule(c, stale_q, "stale_t", cron="0 * * * *", mode="append", keys=["id"])
        fx.create_table(c, "stale_t", "id text")
        fx.add_run(c, "stale_t", started_at=NOW - timedelta(minutes=110), rows=4, schedule_id=stale_s,
                   query_id=stale_q, mode="append")
        fail_q = fx.add_query(c, "users", "okta")
        fail_s = fx.add_schedule(c, fail_q, "failing_t", cron="*/15 * * * *")
        fx.create_table(c, "failing_t", "login text")
        fx.add_run(c, "failing_t", started_at=NOW - timedelta(hours=3), rows=9, schedule_id=fail_s, query_id=fail_q)
        fx.add_run(c, "failing_t", started_at=NOW - timedelta(minutes=5), status="failed", schedule_id=fail_s,
                   query_id=fail_q, error="AccessDenied")
        fx.add_run(c, "failing_t", started_at=NOW - timedelta(minutes=1), status="running", schedule_id=fail_s,
                   query_id=fail_q)
        fx.create_table(c, "manual_t", "x int")
        fx.add_run(c, "manual_t", started_at=NOW - timedelta(days=9), rows=1, trigger="adhoc", mode="append")
        fx.create_table(c, "hist_t", "x int", history=True)
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.mv AS SELECT 1 AS one"))

    t = _by_name()
    assert {n: v.freshness.state for n, v in t.items()} == {
        "fresh_t": Freshness.FRESH, "stale_t": Freshness.STALE, "failing_t": Freshness.FAILING,
        "manual_t": Freshness.MANUAL, "hist_t": Freshness.MANUAL, "mv": Freshness.MANUAL}
    assert (t["fresh_t"].write_mode, t["stale_t"].write_mode, t["manual_t"].write_mode, t["hist_t"].write_mode,
            t["mv"].write_mode) == ("replace", "append", "append", "history", "")
    assert (t["fresh_t"].query_name, t["fresh_t"].provider, t["fresh_t"].cron_expression,
            t["fresh_t"].schedule_id) == ("buckets", "aws", "0 * * * *", fresh_s)
    assert t["failing_t"].running and not t["fresh_t"].running
    assert t["failing_t"].last_error == "AccessDenied" and t["failing_t"].last_success_rows == 9
    assert t["mv"].kind == "materialized view" and t["stale_t"].key_columns == ("id",)

    m = inventory.catalogue(NOW).metrics
    assert (m.tables, m.refreshed_24h, m.stale, m.failing) == (6, 3, 1, 1)

    # A schedule whose only run failed has no table yet: it still counts as a failed last run, until a success.
    with db.begin() as c:
        new_q = fx.add_query(c, "repos", "github")
        new_s = fx.add_schedule(c, new_q, "never_written", cron="0 * * * *")
        fx.add_run(c, "never_written", started_at=NOW - timedelta(minutes=3), status="failed", schedule_id=new_s,
                   query_id=new_q, error="401 Bad credentials")
    m = inventory.catalogue(NOW).metrics
    assert (m.tables, m.failing) == (6, 2)
    with db.begin() as c:
        fx.add_run(c, "never_written", started_at=NOW - timedelta(minutes=1), status="success", rows=0,
                   schedule_id=new_s, query_id=new_q)
    assert inventory.catalogue(NOW).metrics.failing == 1
    assert (m.total_rows, m.total_rows_exact) == (0, True)


def test_search_and_sort(db: sa.Engine) -> None:
    with db.begin() as c:
        for name, n, provider in (("b_table", 30, "aws"), ("a_table", 5, "github"), ("c_table", 12, "aws")):
            qid = fx.add_query(c, f"{name} query", provider)
            fx.add_schedule(c, qid, name)
            c.execute(sa.text(f"CREATE TABLE stackql_inventory.{name} AS SELECT g FROM generate_series(1, {n}) g"))
    tables = inventory.catalogue(NOW).tables
    names = lambda ts: [x.name for x in ts]  # noqa: E731
    assert names(inventory.search_and_sort(tables)) == ["a_table", "b_table", "c_table"]
    assert names(inventory.search_and_sort(tables, sort="rows", descending=True)) == ["b_table", "c_table", "a_table"]
    assert names(inventory.search_and_sort(tables, search="GITHUB")) == ["a_table"]
    assert names(inventory.search_and_sort(tables, search="c_table q")) == ["c_table"]
    assert inventory.search_and_sort(tables, search="nothing") == []
    with pytest.raises(UserFacingError) as e:
        inventory.search_and_sort(tables, sort="bogus")
    assert e.value.kind is ErrorKind.VALIDATION
    assert inventory.resources_per_provider(tables) == [("aws", 42), ("github", 5)]


def test_resources_per_provider_prefers_the_last_runs_count(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.seed_history(c)          # aws, last run collected 3 resources (8 version rows in the table)
        fx.seed_append(c)           # github, last run collected 2 rows (4 rows kept)
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.derived AS SELECT * FROM stackql_inventory.github_repos"))
    assert inventory.resources_per_provider(inventory.catalogue(NOW).tables) == [("aws", 3), ("github", 2)]


def test_runs_ledger_latest_first_and_filtered_by_status(db: sa.Engine) -> None:
    with db.begin() as c:
        qid = fx.add_query(c, "ec2")
        ok = fx.add_run(c, "a", started_at=NOW - timedelta(hours=2), rows=5, query_id=qid)
        bad = fx.add_run(c, "b", started_at=NOW - timedelta(hours=1), status="failed", error="boom")
        running = fx.add_run(c, "a", started_at=NOW, status="running")
    assert [r.id for r in inventory.latest_runs()] == [running, bad, ok]
    failed = inventory.latest_runs("failed")
    assert [(r.id, r.status, r.error_message, r.target) for r in failed] == [
        (bad, "failed", "boom", "stackql_inventory.b")]
    assert inventory.latest_runs("success")[0].query_name == "ec2"
    assert inventory.latest_runs("skipped") == []
    assert len(inventory.latest_runs(limit=2)) == 2
    with pytest.raises(UserFacingError) as e:
        inventory.latest_runs("exploded")
    assert e.value.kind is ErrorKind.VALIDATION


def test_rows_per_run_oldest_first(db: sa.Engine) -> None:
    with db.begin() as c:
        ids = fx.seed_history(c)
        fx.add_run(c, "aws_ec2_history", status="failed", started_at=NOW)
    assert [(p.run_id, p.rows) for p in inventory.rows_per_run("aws_ec2_history")] == [
        (ids[0], 3), (ids[1], 4), (ids[2], 3)]
    assert inventory.rows_per_run("nothing_here") == []


def test_a_table_locked_by_a_run_does_not_hang_the_list(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.swapping AS SELECT g FROM generate_series(1, 10) g"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.other AS SELECT g FROM generate_series(1, 3) g"))
    holder = db.connect()
    tx = holder.begin()
    holder.execute(sa.text("LOCK TABLE stackql_inventory.swapping IN ACCESS EXCLUSIVE MODE"))
    try:
        started = time.monotonic()
        cat = inventory.catalogue(NOW)
        assert time.monotonic() - started < 3
        assert "rewriting a table" in cat.note
        assert {t.name for t in cat.tables} == {"swapping", "other"}
    finally:
        tx.rollback()
        holder.close()
    cat = inventory.catalogue(NOW)
    assert cat.note == "" and {t.name: t.rows.value for t in cat.tables} == {"swapping": 10, "other": 3}


def test_list_runs_while_a_run_writes(db: sa.Engine) -> None:
    """Rows committed by a concurrent writer show up on the next load; the list never blocks on it."""
    with db.begin() as c:
        fx.create_table(c, "live", "id int")
    stop = threading.Event()

    def writer() -> None:
        with db.connect() as c:
            while not stop.is_set():
                with c.begin():
                    fx.insert_rows(c, "live", [{"id": i} for i in range(50)], 1)

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = [_by_name()["live"].rows.value for _ in range(5)]
    finally:
        stop.set()
        t.join()
    assert all(v is not None for v in seen) and seen == sorted(seen)


def test_the_details_panel_shows_the_last_refresh_like_the_rest_of_the_page(db: sa.Engine) -> None:
    """The writer keeps an ISO time in the table's COMMENT (for readers elsewhere); the page showed it raw
    (`2026-11-26T11:18:03.250000+00:00`) beside formatted times everywhere else."""
    from stackql_inventory.services import inventory_writer

    collected = datetime(2026, 11, 26, 11, 18, 3, 250000, tzinfo=UTC)
    rows = [(str(i),) for i in range(1234)]
    inventory_writer.write("stackql_inventory", "ec2", ["id"], iter(rows), mode="replace", run_id=42,
                           collected_at=collected, key_columns=(),
                           provenance=inventory_writer.Provenance(query_name="EC2", query_id=3))
    comment = _by_name()["ec2"].comment
    assert f"Last refresh: {collected.isoformat()} by run 42 (1234 rows)" in comment
    shown = inventory.comment_for_display(comment, NOW).splitlines()
    assert shown[-1] == "Last refresh: 2026-11-26 11:18 UTC (42 min ago) by run 42 (1,234 rows)"
    assert shown[:-1] == comment.splitlines()[:-1]  # the rest as written


@pytest.mark.parametrize(("comment", "shown"), [
    ("Last refresh: 2026-11-24T12:00:00+00:00 by run 1 (1 rows)",
     "Last refresh: 2026-11-24 12:00 UTC (2.0 days ago) by run 1 (1 row)"),
    ("Last refresh: 2026-11-26T13:30:00+01:30 by run 2 (0 rows)",  # another offset: shown in UTC
     "Last refresh: 2026-11-26 12:00 UTC (0 s ago) by run 2 (0 rows)"),
    ("Last refresh: 2026-11-26T11:59:30Z by run 3 (7 rows)",
     "Last refresh: 2026-11-26 11:59 UTC (30 s ago) by run 3 (7 rows)"),
    ("Last refresh: soon by run 4 (7 rows)", "Last refresh: soon by run 4 (7 rows)"),  # not a time: left alone
    ("Materialized view over stackql_inventory, created by ana on 2026-11-26 10:00 UTC.",
     "Materialized view over stackql_inventory, created by ana on 2026-11-26 10:00 UTC."),
    ("", ""),
])
def test_comment_for_display(comment: str, shown: str) -> None:
    assert inventory.comment_for_display(comment, NOW) == shown
