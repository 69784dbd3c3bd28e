"""SQL for materialized views in `stackql_inventory`: list, create (checked against the catalog), refresh, index."""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from psycopg2 import sql
from sqlmodel import Session

from stackql_inventory.db.inventory_catalog import driver_connection, qualified, run
from stackql_inventory.db.models import INVENTORY_SCHEMA

# OIDs below this are objects built into PostgreSQL (initdb); extensions and user objects are above.
FIRST_NORMAL_OID = 16384

_LIST_SQL = sa.text(
    """
    -- pg_get_viewdef and the size functions lock the view (and the tables it reads): `:details` false skips them.
    SELECT c.oid::bigint AS oid, c.relname AS name,
           CASE WHEN :details THEN pg_get_viewdef(c.oid, true) END AS definition,
           c.relispopulated AS populated,
           CASE WHEN :details THEN pg_total_relation_size(c.oid) ELSE c.relpages::bigint * :block_size END AS size_bytes,
           c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
           CASE WHEN :details THEN pg_relation_size(c.oid) ELSE c.relpages::bigint * :block_size END AS heap_bytes,
           obj_description(c.oid, 'pg_class') AS comment,
           (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
            FROM (SELECT i.indexrelid, i.indkey FROM pg_index i
                  WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
                    AND i.indexprs IS NULL
                  ORDER BY i.indnatts LIMIT 1) u
            JOIN LATERAL unnest(u.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS unique_columns,
           (SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           lr.finished_at AS last_refresh_at, lr.duration_s AS last_refresh_s, lr.created_by AS last_refresh_by
    FROM pg_class c
    LEFT JOIN LATERAL (
        SELECT r.finished_at, r.duration_s, r.created_by FROM stackql_app.runs r
        WHERE r.target_schema = :schema AND r.target_table = c.relname AND r.status = 'success'
        ORDER BY r.started_at DESC LIMIT 1) lr ON true
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema) AND c.relkind = 'm'
    ORDER BY c.relname
    """
)

_KINDS_SQL = sa.text(
    """
    SELECT c.relname AS name, c.relkind AS kind FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema) AND c.relname = ANY(:names)
    """
)

_RULE_SQL = sa.text("SELECT r.oid::bigint AS oid, r.ev_action::text AS action FROM pg_rewrite r WHERE r.ev_class = :oid")

# Everything the view's rule depends on that is not built in (pinned objects are never recorded).
_DEPENDS_SQL = sa.text(
    """
    SELECT d.refclassid::regclass::text AS catalog, d.refobjid::bigint AS oid,
           pg_describe_object(d.refclassid, d.refobjid, 0) AS description,
           CASE WHEN d.refclassid = 'pg_class'::regclass
                THEN (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = d.refobjid) END AS schema
    FROM pg_depend d
    WHERE d.classid = 'pg_rewrite'::regclass AND d.objid = :rule AND d.refobjid <> :view
    """
)

_RELS_SQL = sa.text(
    """
    SELECT c.oid::bigint AS oid, c.relname AS name, n.nspname AS schema, c.relkind AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(:oids)
    """
)

_PROCS_SQL = sa.text(
    """
    SELECT p.oid::bigint AS oid, p.proname AS name, n.nspname AS schema
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = ANY(:oids)
    """
)

_FUNCEXPR_RE = re.compile(r"\{FUNCEXPR :funcid (\d+) :funcresulttype \d+ :funcretset \w+ :funcvariadic \w+ "
                          r":funcformat (\d+)")
_CALL_RE = re.compile(r":(aggfnoid|winfnoid) (\d+)")
_BUILTIN_RE = re.compile(r":(opfuncid|tsmhandler) (\d+)")
_RELID_RE = re.compile(r":relid (\d+)")


def list_views(session: Session, *, details: bool = True, block_size: int = 8192) -> list[sa.Row]:
    """Materialized views with definition, sizes, unique key and last refresh (`details=False`: no locks taken)."""
    return list(session.execute(_LIST_SQL, {"schema": INVENTORY_SCHEMA, "details": details,
                                            "block_size": block_size}))


def relkinds(session: Session, names: Sequence[str]) -> dict[str, str]:
    """relkind of each named object of `stackql_inventory` that exists."""
    return {r.name: r.kind for r in session.execute(_KINDS_SQL, {"schema": INVENTORY_SCHEMA, "names": list(names)})}


def set_guards(session: Session, timeout_s: int) -> None:
    """Only built-in functions, operators and types resolve unqualified; the statement is time-boxed."""
    run(session, "SET LOCAL search_path = pg_catalog, pg_temp")
    run(session, f"SET LOCAL statement_timeout = '{int(timeout_s)}s'")
    run(session, "SET LOCAL lock_timeout = '10s'")


def explain(session: Session, select_sql: str) -> None:
    """Plan (not run) the SELECT, so PostgreSQL reports unknown columns and type errors."""
    run(session, sql.SQL("EXPLAIN {}").format(sql.SQL(select_sql)))


def create_empty(session: Session, name: str, select_sql: str) -> int:
    """CREATE MATERIALIZED VIEW … WITH NO DATA (nothing executes); return its oid."""
    run(session, sql.SQL("CREATE MATERIALIZED VIEW {} AS {} WITH NO DATA").format(qualified(name), sql.SQL(select_sql)))
    return int(run(session, "SELECT %s::regclass::oid::bigint",
                   (qualified(name).as_string(driver_connection(session)),)).scalar_one())



def rule_references(session: Session, view_oid: int) -> dict[str, list]:
    """What the stored definition really uses, read from its rewrite rule.

    Returns `relations` [(oid, name, schema, kind)], `calls` [(oid, name, schema)] (functions called by
    name: FUNCEXPR with an explicit-call or SQL-syntax format, aggregates, window functions),
    `internal` [oid] (cast, operator and TABLESAMPLE functions), `depends` [(catalog, description,
    schema)] (every non-built-in object it depends on), and `unparsed` (FUNCEXPR nodes the pattern
    did not match; non-zero means: refuse).
    """
    rule = session.execute(_RULE_SQL, {"oid": view_oid}).one()
    text = rule.action
    funcexprs = _FUNCEXPR_RE.findall(text)
    called = {int(oid) for oid, fmt in funcexprs if fmt in ("0", "3")}
    internal = {int(oid) for oid, fmt in funcexprs if fmt not in ("0", "3")}
    called |= {int(oid) for _, oid in _CALL_RE.findall(text)}
    internal |= {int(oid) for _, oid in _BUILTIN_RE.findall(text)}
    relids = {int(oid) for oid in _RELID_RE.findall(text)} - {0}
    rels = [tuple(r) for r in session.execute(_RELS_SQL, {"oids": list(relids)})] if relids else []
    procs = [tuple(r) for r in session.execute(_PROCS_SQL, {"oids": list(called)})] if called else []
    depends = [(r.catalog, r.description, r.schema)
               for r in session.execute(_DEPENDS_SQL, {"rule": rule.oid, "view": view_oid})]
    return {
        "relations": rels, "missing_relations": sorted(relids - {r[0] for r in rels}), "calls": procs,
        "missing_calls": sorted(called - {p[0] for p in procs}), "internal": sorted(internal),
        "depends": depends, "unparsed": text.count("{FUNCEXPR ") - len(funcexprs),
    }


def populate(session: Session, name: str, *, concurrently: bool = False) -> None:
    """REFRESH MATERIALIZED VIEW [CONCURRENTLY]."""
    stmt = "REFRESH MATERIALIZED VIEW CONCURRENTLY {}" if concurrently else "REFRESH MATERIALIZED VIEW {}"
    run(session, sql.SQL(stmt).format(qualified(name)))


def analyze(session: Session, name: str) -> None:
    """Refresh the planner's statistics (the list's row estimate) after a refresh."""
    run(session, sql.SQL("ANALYZE {}").format(qualified(name)))


def comment(session: Session, name: str, text: str) -> None:
    run(session, sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS %s").format(qualified(name)), (text,))


def try_lock(session: Session, name: str) -> bool:
    """A transaction-scoped advisory lock per view, so two refreshes never queue behind each other."""
    return bool(run(session, "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{INVENTORY_SCHEMA}.{name}",)).scalar_one())


def create_unique_index(session: Session, view: str, index_name: str, columns: Sequence[str]) -> None:
    run(session, sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
        sql.Identifier(index_name), qualified(view), sql.SQL(", ").join(sql.Identifier(c) for c in columns)))


def index_exists(session: Session, index_name: str) -> bool:
    return bool(session.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :name)"), {"schema": INVENTORY_SCHEMA, "name": index_name}).scalar())
