"""Materialized views: the SELECT guard (parse tree), creation checked against the catalog, refresh, unique index."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from stackql_inventory.db import inventory_matviews as db_matviews
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services import inventory_matviews as mv
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.inventory_sql_guard import check_view_name, validate_select
from tests.support import inventory as fx

ANA = Identity("ana@example.com", "ana@example.com", "proxy")

# (SQL, words the refusal must contain)
REFUSED = [
    ("DELETE FROM ec2", "not DELETE"),
    ("UPDATE ec2 SET state = 'x'", "not UPDATE"),
    ("INSERT INTO ec2 VALUES (1)", "not INSERT"),
    ("SELECT * FROM ec2; DROP TABLE ec2", "exactly one SELECT"),
    ("SELECT * FROM ec2;; DELETE FROM ec2", "exactly one SELECT"),
    ("WITH d AS (DELETE FROM ec2 RETURNING *) SELECT * FROM d", "CTE 'd' uses DELETE"),
    ("WITH u AS (UPDATE ec2 SET a = 1 RETURNING *) SELECT * FROM u", "CTE 'u' uses UPDATE"),
    ("SELECT * FROM ec2 WHERE id IN (WITH i AS (INSERT INTO x VALUES (1) RETURNING 1) SELECT * FROM i)",
     "CTE 'i' uses INSERT"),
    ("SELECT * FROM stackql_app.provider_config", "app's own metadata"),
    ("SELECT e.* FROM ec2 e JOIN stackql_app.runs r ON true", "app's own metadata"),
    ("SELECT * FROM pg_catalog.pg_authid", "system catalogs"),
    ("SELECT * FROM information_schema.tables", "system catalogs"),
    ("SELECT * FROM public.secrets", "only stackql_inventory objects"),
    ("SELECT * FROM otherdb.stackql_inventory.ec2", "other databases"),
    ("SELECT pg_sleep(10) FROM ec2", "pg_sleep() is not allowed"),
    ("SELECT pg_catalog.pg_sleep(10) FROM ec2", "pg_sleep() is not allowed"),
    ("SELECT set_config('search_path', 'public', false) FROM ec2", "set_config() is not allowed"),
    ("SELECT * FROM ec2, dblink('host=x', 'select 1') AS t(a int)", "dblink() is not allowed"),
    ("SELECT lo_import('/etc/passwd') FROM ec2", "lo_import() is not allowed"),
    ("SELECT nextval('s') FROM ec2", "nextval() is not allowed"),
    ("SELECT current_setting('data_directory') FROM ec2", "current_setting() is not allowed"),
    ("SELECT table_to_xml('stackql_app.provider_config'::regclass, true, true, '') FROM ec2", "table_to_xml()"),
    ("SELECT query_to_xml('select 1', true, true, '') FROM ec2", "query_to_xml()"),
    ("SELECT public.my_func(id) FROM ec2", "only built-in functions"),
    ("SELECT 1 OPERATOR(public.+) 2 FROM ec2", "only built-in operators"),
    ("SELECT 1 OPERATOR(public.=) ANY (SELECT 1) FROM ec2", "only built-in operators"),
    ("SELECT id::public.evil FROM ec2", "built-in types"),
    ("SELECT * FROM ec2 FOR UPDATE", "FOR UPDATE"),
    ("SELECT * INTO copy FROM ec2", "SELECT INTO"),
    ("SELECT * FROM ec2 WHERE id = $1", "parameter"),
    ("SELECT * FROM ec2 TABLESAMPLE my_sampler(5)", "TABLESAMPLE"),
    ("SELECT * FROM ec2, XMLTABLE('/a' PASSING '<a/>' COLUMNS x int)", "not supported"),
    ("EXPLAIN SELECT * FROM ec2", "not EXPLAIN"),
    ("SELECT 1", "reads no stackql_inventory table"),
    ("SELECT FROM WHERE", "does not parse"),
    ("", "Write the SELECT"),
    ("SELECT * FROM ec2 WHERE " + " OR ".join(["id = 1"] * 3000), "longer than"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_guard_refuses(text: str, reason: str) -> None:
    with pytest.raises(UserFacingError) as e:
        validate_select(text)
    assert e.value.kind is ErrorKind.VALIDATION
    assert reason in e.value.message


def test_guard_qualifies_names_and_respects_cte_scope() -> None:
    v = validate_select("WITH x AS (SELECT * FROM ec2) SELECT lower(x.name), j->>'a' FROM x JOIN s3 USING (id)")
    assert v.canonical_sql == ("WITH x AS (SELECT * FROM stackql_inventory.ec2) SELECT lower(x.name), j ->> 'a' "
                               "FROM x INNER JOIN stackql_inventory.s3 USING (id)")
    assert v.relations == ("ec2", "s3") and v.functions == ("lower",)
    # A name that is a CTE only inside a subquery is a table outside it: qualified, never a catalog.
    out_of_scope = validate_select("SELECT * FROM (WITH pg_authid AS (SELECT 1) SELECT * FROM pg_authid) a, pg_authid")
    assert out_of_scope.canonical_sql.endswith("AS a, stackql_inventory.pg_authid")
    # A plain WITH only sees the CTEs defined before it; a recursive one sees all of them.
    earlier = validate_select("WITH a AS (SELECT * FROM pg_roles), pg_roles AS (SELECT 1) SELECT * FROM a")
    assert "FROM stackql_inventory.pg_roles" in earlier.canonical_sql
    recursive = validate_select("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
                                "SELECT * FROM t, ec2")
    assert "FROM t WHERE" in recursive.canonical_sql and recursive.relations == ("ec2",)


@pytest.mark.parametrize("text", [
    "SELECT region, count(*) FROM ec2 GROUP BY region",
    "SELECT e.value FROM ec2, jsonb_array_elements(ec2.tags::jsonb) e",
    "SELECT date_trunc('day', _stackql_collected_at AT TIME ZONE 'UTC'), extract(epoch FROM now()), "
    "substring(name FROM 1 FOR 3), coalesce(a, b), greatest(1, 2), CASE WHEN a THEN 1 END, ARRAY[1], "
    "EXISTS (SELECT 1 FROM s3), row_number() OVER (PARTITION BY region ORDER BY id) FROM ec2 TABLESAMPLE BERNOULLI (5)",
    "SELECT r.* FROM ec2, jsonb_to_record(ec2.j) AS r(a int)",
])
def test_guard_accepts_read_only_selects(text: str) -> None:
    assert validate_select(text).canonical_sql


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a-b", "a b", "x" * 64, 'a"; drop'])
def test_view_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(UserFacingError):
        check_view_name(name)


# ------------------------------------------------------------------ against PostgreSQL

@pytest.fixture
def ec2(db: sa.Engine) -> sa.Engine:
    with db.begin() as c:
        fx.seed_history(c, "ec2")
        c.execute(sa.text("CREATE TABLE stackql_inventory.s3 (bucket text, region text, public boolean)"))
        c.execute(sa.text("INSERT INTO stackql_inventory.s3 VALUES ('b1', 'us-east-1', true), ('b2', 'eu-west-1', false)"))
    return db


def _inventory_objects(db: sa.Engine) -> set[str]:
    with db.connect() as c:
        return set(c.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'stackql_inventory'::regnamespace AND relkind = 'm'"
        )).scalars())


def _ledger(db: sa.Engine) -> list[tuple]:
    with db.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT target_table, status, backend, rows_written, created_by FROM stackql_app.runs "
            "WHERE backend = 'postgres' ORDER BY id"))]


def test_creates_and_populates_a_view(ec2: sa.Engine) -> None:
    view = mv.create_matview(
        "current_by_region",
        "SELECT region, count(*) AS instances, jsonb_agg(DISTINCT tags::jsonb ->> 'env') AS envs "
        "FROM ec2 WHERE _valid_to IS NULL AND NOT _is_deleted GROUP BY region", ANA)
    assert view.populated and view.columns == ["region", "instances", "envs"]
    assert view.rows.exact and view.rows.value == 3
    assert "stackql_inventory.ec2" in view.definition
    assert "created by ana@example.com" in view.comment
    assert view.last_refresh_by == "ana@example.com" and view.last_refresh_at is not None
    with ec2.connect() as c:
        got = dict(c.execute(sa.text("SELECT region, instances FROM stackql_inventory.current_by_region")).all())
    assert got == {"us-east-1": 1, "us-west-2": 1, "eu-west-1": 1}
    assert _ledger(ec2) == [("current_by_region", "success", "postgres", 3, "ana@example.com")]
    assert [m.name for m in mv.list_matviews()] == ["current_by_region"]


@pytest.mark.parametrize(("text", "reason"), [
    ("DELETE FROM ec2", "not DELETE"),
    ("SELECT * FROM ec2; DROP TABLE stackql_inventory.ec2", "exactly one SELECT"),
    ("WITH d AS (DELETE FROM ec2 RETURNING *) SELECT * FROM d", "uses DELETE"),
    ("SELECT * FROM stackql_app.provider_config", "app's own metadata"),
    ("SELECT * FROM pg_catalog.pg_authid", "system catalogs"),
    ("SELECT pg_sleep(5), * FROM ec2", "pg_sleep"),
    ("SELECT set_config('statement_timeout', '0', false) FROM ec2", "set_config"),
    ("SELECT nextval('stackql_app.runs_id_seq') FROM ec2", "nextval"),
    ("SELECT * FROM nothing_here", "does not exist"),
    ("SELECT * FROM (WITH pg_authid AS (SELECT 1) SELECT * FROM pg_authid) a, pg_authid", "does not exist"),
    ("SELECT no_such_column FROM ec2", "no_such_column"),
    ("SELECT region::int FROM s3", "Nothing was created"),
])
def test_refused_inputs_create_nothing(ec2: sa.Engine, text: str, reason: str) -> None:
    with pytest.raises(UserFacingError) as e:
        mv.create_matview("bad_view", text, ANA)
    assert e.value.kind is ErrorKind.VALIDATION
    assert reason.lower() in e.value.message.lower()
    assert _inventory_objects(ec2) == set() and _ledger(ec2) == []
    with ec2.connect() as c:  # the tables are intact
        assert c.execute(sa.text("SELECT count(*) FROM stackql_inventory.ec2")).scalar() == 8


def test_views_and_names_in_use_are_refused(ec2: sa.Engine) -> None:
    with ec2.begin() as c:
        c.execute(sa.text("CREATE VIEW stackql_inventory.leaky AS SELECT * FROM stackql_app.provider_config"))
    with pytest.raises(UserFacingError) as e:
        mv.create_matview("v1", "SELECT * FROM leaky", ANA)
    assert "is a view" in e.value.message
    with pytest.raises(UserFacingError) as e:
        mv.create_matview("s3", "SELECT * FROM ec2", ANA)
    assert e.value.kind is ErrorKind.CONFLICT


def test_read_only_users_cannot_create_or_refresh(ec2: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    mv.create_matview("by_region", "SELECT region, count(*) AS n FROM s3 GROUP BY region", ANA)
    monkeypatch.setenv("STACKQL_INVENTORY_EDITORS", "someone@else.com")
    get_settings.cache_clear()
    try:
        for call in (lambda: mv.create_matview("x", "SELECT * FROM s3", ANA),
                     lambda: mv.refresh_matview("by_region", ANA),
                     lambda: mv.create_unique_index("by_region", ["region"], ANA)):
            with pytest.raises(UserFacingError) as e:
                call()
            assert e.value.kind is ErrorKind.PERMISSION
    finally:
        monkeypatch.delenv("STACKQL_INVENTORY_EDITORS")
        get_settings.cache_clear()


def test_the_stored_definition_is_checked_against_the_catalog(ec2: sa.Engine) -> None:
    """The second line of defence: what the created rule really reads and calls."""
    with ec2.begin() as c:
        c.execute(sa.text("CREATE FUNCTION public.leak() RETURNS int LANGUAGE sql AS 'SELECT 1'"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.m_app AS "
                          "SELECT e.region FROM stackql_inventory.ec2 e JOIN stackql_app.runs r ON true WITH NO DATA"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.m_cat AS "
                          "SELECT rolname FROM pg_catalog.pg_authid WITH NO DATA"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.m_fn AS "
                          "SELECT public.leak(), region FROM stackql_inventory.s3 WITH NO DATA"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.m_sleep AS "
                          "SELECT region FROM stackql_inventory.s3 WHERE pg_sleep(0)::text = '' WITH NO DATA"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.m_ok AS "
                          "SELECT lower(region), count(*), (bucket || 'x')::varchar(5) FROM stackql_inventory.s3 "
                          "GROUP BY 1, 3 WITH NO DATA"))
    expected = {"m_app": "stackql_app.runs", "m_cat": "pg_catalog.pg_authid", "m_fn": "leak",
                "m_sleep": "pg_sleep"}
    with session_scope() as s:
        oids = dict(s.execute(sa.text("SELECT relname, oid::bigint FROM pg_class WHERE relname LIKE 'm\\_%'")).all())
        for name, word in expected.items():
            with pytest.raises(UserFacingError) as e:
                mv._verify_rule(db_matviews.rule_references(s, oids[name]))
            assert word in e.value.message, (name, e.value.message)
        mv._verify_rule(db_matviews.rule_references(s, oids["m_ok"]))


def test_refresh_plain_then_concurrently_after_adding_a_unique_index(ec2: sa.Engine) -> None:
    mv.create_matview("s3_by_region", "SELECT region, count(*) AS buckets FROM s3 GROUP BY region", ANA)
    with ec2.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_inventory.s3 VALUES ('b3', 'ap-south-1', false)"))
    first = mv.refresh_matview("s3_by_region", ANA)
    assert (first.concurrently, first.rows) == (False, 3)
    with pytest.raises(UserFacingError) as e:
        mv.create_unique_index("s3_by_region", ["buckets"], ANA)   # 1, 1, 1: not unique
    assert "share the same (buckets)" in e.value.message
    for bad, text in (([], "Pick the column"), (["nope"], "no column nope"), (["region", "region"], "once")):
        with pytest.raises(UserFacingError) as e:
            mv.create_unique_index("s3_by_region", bad, ANA)
        assert text in e.value.message
    view = mv.create_unique_index("s3_by_region", ["region"], ANA)
    assert view.unique_columns == "region" and view.can_refresh_concurrently
    with ec2.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_inventory.s3 WHERE bucket = 'b1'"))
    second = mv.refresh_matview("s3_by_region", ANA)
    assert (second.concurrently, second.rows) == (True, 2)
    assert [r[1:4] for r in _ledger(ec2)] == [("success", "postgres", 2), ("success", "postgres", 3),
                                              ("success", "postgres", 2)]


def test_refresh_failures_are_recorded_and_keep_the_old_rows(ec2: sa.Engine) -> None:
    with ec2.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.nums (n int)"))
        c.execute(sa.text("INSERT INTO stackql_inventory.nums VALUES (5)"))
    mv.create_matview("inverse", "SELECT 100 / n AS x FROM nums", ANA)
    with ec2.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_inventory.nums VALUES (0)"))
    with pytest.raises(UserFacingError) as e:
        mv.refresh_matview("inverse", ANA)
    assert "division by zero" in e.value.message and "previous rows" in e.value.message
    with ec2.connect() as c:
        assert c.execute(sa.text("SELECT x FROM stackql_inventory.inverse")).scalars().all() == [20]
        failed = c.execute(sa.text("SELECT status, error_message FROM stackql_app.runs WHERE target_table = 'inverse' "
                                   "ORDER BY id DESC LIMIT 1")).one()
    assert failed.status == "failed" and "division by zero" in failed.error_message
    with pytest.raises(UserFacingError) as e:
        mv.refresh_matview("nums", ANA)
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_a_second_refresh_while_one_runs_is_refused(ec2: sa.Engine) -> None:
    mv.create_matview("busy_view", "SELECT region FROM s3", ANA)
    holder = ec2.connect()
    tx = holder.begin()
    holder.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('stackql_inventory.busy_view', 0))"))
    try:
        with pytest.raises(UserFacingError) as e:
            mv.refresh_matview("busy_view", ANA)
        assert e.value.kind is ErrorKind.CONFLICT
    finally:
        tx.rollback()
        holder.close()
    assert [r[1] for r in _ledger(ec2)] == ["success"]   # the refused refresh left no run behind


def test_a_slow_population_is_stopped_and_leaves_nothing(ec2: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mv, "CREATE_TIMEOUT_S", 1)
    with pytest.raises(UserFacingError) as e:
        mv.create_matview("slow", "SELECT count(*) FROM s3, generate_series(1, 100000000) g", ANA)
    assert e.value.kind is ErrorKind.TIMEOUT
    assert _inventory_objects(ec2) == set() and _ledger(ec2) == []


def test_a_base_table_held_by_a_run_gives_a_message(ec2: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    mv.create_matview("waits", "SELECT region FROM s3", ANA)
    original = db_matviews.set_guards
    monkeypatch.setattr(db_matviews, "set_guards", lambda s, timeout_s: (original(s, timeout_s), db_matviews.run(
        s, "SET LOCAL lock_timeout = '200ms'")))
    holder = ec2.connect()
    tx = holder.begin()
    holder.execute(sa.text("LOCK TABLE stackql_inventory.s3 IN ACCESS EXCLUSIVE MODE"))
    try:
        with pytest.raises(UserFacingError) as e:
            mv.refresh_matview("waits", ANA)
        assert e.value.kind is ErrorKind.CONFLICT and "try again" in e.value.message
    finally:
        tx.rollback()
        holder.close()
    with ec2.connect() as c:
        assert c.execute(sa.text("SELECT status FROM stackql_app.runs WHERE target_table = 'waits' ORDER BY id")
                         ).scalars().all() == ["success", "failed"]
