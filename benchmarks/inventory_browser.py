"""Inventory browser speed: the table list over 500 tables, and preview pages 1 and 1,000 of a 5,000,000-row table.

Runs on a fresh machine: an embedded PostgreSQL 16 (pgserver) in a temp dir, migrated, then filled with
`INSERT … SELECT generate_series` (499 tables of 0–3,000 rows in the runner's layouts — replace, append,
SCD2 history — with schedules, saved queries and a 20,000-run ledger, plus one 5,000,000-row table with
JSON text columns and no primary key, as the runner writes it).

Measures server time (median of several runs) of the service calls the page makes:
- list: `services.inventory.catalogue()` — catalog, schedules, ledger, exact counts of small tables;
- preview: `services.inventory_preview.fetch_page()` of page 1 and of page 1,000 (resumed from its cursor).
Baselines measured in the same run: the list with `count(*)` of every table, and page 1,000 by OFFSET.
The same pages are also timed after adding a unique index (key paging instead of ctid windows).

    .venv/bin/python benchmarks/inventory_browser.py [--rows 5000000] [--tables 500] [--repeat 7]

Last line: `list_500_ms=<ms> preview_p1_ms=<ms> preview_p1000_ms=<ms>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG = "aws_ec2_instances_all"
PAGE = 50


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (plans, caches)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def _setup(engine: sa.Engine, n_tables: int, big_rows: int) -> None:
    modes = ("replace", "replace", "replace", "append", "history")
    providers = ("aws", "google", "azure", "github", "okta", "cloudflare")
    with engine.begin() as c:
        for i in range(n_tables - 1):
            name = f"{providers[i % len(providers)]}_resources_{i:03d}"
            mode = modes[i % len(modes)]
            history = mode == "history"
            extra = (", _key_hash text, _row_hash text, _valid_from timestamptz, _valid_to timestamptz, "
                     "_first_seen timestamptz, _last_seen timestamptz, _is_deleted boolean DEFAULT false, "
                     "_closed_by_run_id bigint") if history else ""
            c.execute(sa.text(
                f"CREATE TABLE stackql_inventory.{name} (resource_id text, name text, account_id text, region text, "
                f"tags text, created_at timestamptz, _stackql_run_id bigint, _stackql_collected_at timestamptz"
                f"{extra})"))
            rows = (i * 7919) % 3001
            cols = "resource_id, name, account_id, region, tags, created_at, _stackql_run_id, _stackql_collected_at"
            vals = ("'r-' || g, 'name-' || g, '1234567890' || (g % 7), (ARRAY['us-east-1','eu-west-1','ap-south-1'])"
                    "[1 + g % 3], json_build_object('env', 'prod', 'team', 'team-' || (g % 11))::text, "
                    "now() - make_interval(days => g % 400), 1, now()")
            if history:
                cols += ", _key_hash, _row_hash, _valid_from, _first_seen, _last_seen"
                vals += ", md5(g::text), md5('v' || g), now(), now(), now()"
            c.execute(sa.text(f"INSERT INTO stackql_inventory.{name} ({cols}) "
                              f"SELECT {vals} FROM generate_series(1, {rows}) g"))
            qid = c.execute(sa.text(
                "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
                "VALUES (:n, 'SELECT 1', :p, 'bench') RETURNING id"),
                {"n": f"query {name}", "p": providers[i % len(providers)]}).scalar_one()
            if i % 10 != 0:  # one table in ten was written by one-off runs only
                c.execute(sa.text(
                    "INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table, write_mode, key_columns) "
                    "VALUES (:q, :c, :t, :m, :k)"),
                    {"q": qid, "c": ("*/15 * * * *", "0 * * * *", "0 6 * * *")[i % 3], "t": name, "m": mode,
                     "k": ["resource_id"]})
        # The ledger: 40 runs per table over the last days, the newest failed for one table in twenty.
        c.execute(sa.text(
            """
            INSERT INTO stackql_app.runs (schedule_id, query_id, target_schema, target_table, write_mode, trigger,
                                          status, started_at, finished_at, rows_written, duration_s, created_by)
            SELECT s.id, s.query_id, 'stackql_inventory', s.target_table, s.write_mode, 'schedule',
                   CASE WHEN k = 40 AND s.id % 20 = 0 THEN 'failed' ELSE 'success' END,
                   now() - make_interval(hours => 41 - k), now() - make_interval(hours => 41 - k) + interval '20 s',
                   (s.id * 13) % 3000, 20, 'scheduler'
            FROM stackql_app.schedules s, generate_series(1, 40) k
            """))
        t = time.perf_counter()
        c.execute(sa.text(
            f"""
            CREATE TABLE stackql_inventory.{BIG} (
                instance_id text, account_id text, region text, instance_type text, state text,
                launch_time timestamptz, tags text, network_interfaces text,
                _stackql_run_id bigint, _stackql_collected_at timestamptz)
            """))
        c.execute(sa.text(
            f"""
            INSERT INTO stackql_inventory.{BIG}
            SELECT 'i-' || lpad(to_hex(g), 17, '0'), '1234567890' || (g % 9),
                   (ARRAY['us-east-1','us-west-2','eu-west-1','eu-central-1','ap-south-1'])[1 + g % 5],
                   (ARRAY['t3.micro','m5.large','c6g.xlarge','r6i.2xlarge'])[1 + g % 4],
                   (ARRAY['running','stopped','pending'])[1 + g % 3],
                   timestamptz '2024-01-01' + make_interval(mins => g % 500000),
                   json_build_object('Name', 'web-' || g, 'env', (ARRAY['prod','dev','staging'])[1 + g % 3],
                                     'team', 'team-' || (g % 40))::text,
                   json_build_array(json_build_object('id', 'eni-' || to_hex(g), 'private_ip',
                                    '10.' || (g % 250) || '.' || (g % 200) || '.' || (g % 100),
                                    'subnet', 'subnet-' || (g % 300)))::text,
                   7, now()
            FROM generate_series(1, {big_rows}) g
            """))
        print(f"setup: {big_rows:,}-row table written in {time.perf_counter() - t:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        t = time.perf_counter()
        c.execute(sa.text("VACUUM ANALYZE"))
        print(f"setup: VACUUM ANALYZE in {time.perf_counter() - t:.1f} s", flush=True)


def _naive_list(engine: sa.Engine) -> None:
    """Baseline: the list with an exact count(*) of every table."""
    with engine.connect() as c:
        names = c.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'stackql_inventory'::regnamespace AND relkind = 'r'"
        )).scalars().all()
        for n in names:
            c.execute(sa.text(f'SELECT count(*) FROM stackql_inventory."{n}"')).scalar()


def _offset_page(engine: sa.Engine, page: int) -> None:
    """Baseline: page N by OFFSET."""
    with engine.connect() as c:
        c.execute(sa.text(f"SELECT * FROM stackql_inventory.{BIG} ORDER BY ctid OFFSET :o LIMIT :n"),
                  {"o": (page - 1) * PAGE, "n": PAGE}).fetchall()


def _cursor_of_page(fetch_page: Callable, page: int) -> object:
    after = None
    for _ in range(page - 1):
        p = fetch_page(BIG, after=after, page_size=PAGE)
        after = p.next_cursor
    return after


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--tables", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    import pgserver

    from stackql_inventory.db import engine as db_engine
    from stackql_inventory.db import migrate
    from stackql_inventory.services import inventory, inventory_preview

    tmp = Path(tempfile.mkdtemp(prefix="inventory-bench-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="delete")
    try:
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
        engine = sa.create_engine(url, pool_size=5)
        migrate.upgrade(engine)
        db_engine.set_engine(engine)
        _setup(engine, args.tables, args.rows)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before measuring")

        cat = inventory.catalogue()
        assert len(cat.tables) == args.tables, len(cat.tables)
        big = next(t for t in cat.tables if t.name == BIG)
        print(f"list: {len(cat.tables)} tables; {BIG} shows {big.rows.text()} rows "
              f"({sum(t.rows.exact for t in cat.tables)} counted exactly)")
        list_ms = _median_ms(inventory.catalogue, args.repeat)
        naive_ms = _median_ms(lambda: _naive_list(engine), max(1, args.repeat // 3))
        print(f"list: {list_ms:.1f} ms (baseline count(*) of every table: {naive_ms:.0f} ms, "
              f"{naive_ms / list_ms:.1f}x the list)")

        fetch = inventory_preview.fetch_page
        p1_ms = _median_ms(lambda: fetch(BIG, page_size=PAGE), args.repeat)
        t = time.perf_counter()
        after = _cursor_of_page(fetch, 1000)
        walk_s = time.perf_counter() - t
        page1000 = fetch(BIG, after=after, page_size=PAGE)
        assert page1000.rows and page1000.rows[0][0] == "i-" + format((999 * PAGE) + 1, "x").rjust(17, "0"), \
            page1000.rows[0][0]
        p1000_ms = _median_ms(lambda: fetch(BIG, after=after, page_size=PAGE), args.repeat)
        offset_ms = _median_ms(lambda: _offset_page(engine, 1000), max(1, args.repeat // 3))
        print(f"preview ({page1000.plan.describe()}): page 1 {p1_ms:.1f} ms, page 1,000 {p1000_ms:.1f} ms "
              f"(walking 999 pages took {walk_s:.1f} s, {walk_s / 999 * 1000:.1f} ms/page; baseline OFFSET page 1,000: "
              f"{offset_ms:.0f} ms, {offset_ms / p1000_ms:.0f}x slower)")

        with engine.begin() as c:
            t = time.perf_counter()
            c.execute(sa.text(f"CREATE UNIQUE INDEX {BIG}_pk ON stackql_inventory.{BIG} (instance_id)"))
            c.execute(sa.text(f"ALTER TABLE stackql_inventory.{BIG} ALTER COLUMN instance_id SET NOT NULL"))
            print(f"setup: unique index in {time.perf_counter() - t:.1f} s")
        key_p1 = _median_ms(lambda: fetch(BIG, page_size=PAGE), args.repeat)
        key_after = _cursor_of_page(fetch, 1000)
        assert fetch(BIG, after=key_after, page_size=PAGE).plan.kind == "key"
        key_p1000 = _median_ms(lambda: fetch(BIG, after=key_after, page_size=PAGE), args.repeat)
        print(f"preview with a unique key (keyset on instance_id): page 1 {key_p1:.1f} ms, page 1,000 {key_p1000:.1f} ms")
        print(f"machine: load average {os.getloadavg()[0]:.1f} after measuring")
        print(f"list_{args.tables}_ms={list_ms:.1f} preview_p1_ms={p1_ms:.1f} preview_p1000_ms={p1000_ms:.1f}")
        db_engine.set_engine(None)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
