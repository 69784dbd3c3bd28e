"""Validation of a materialized view's SELECT: one read-only query over `stackql_inventory` objects only.

The SQL is parsed with PostgreSQL's own parser (pglast) and the whole tree is walked:
- exactly one statement, a plain SELECT (no SELECT INTO, no FOR UPDATE, no parameters);
- every node type must be on an allow-list of query/expression nodes (anything else is refused);
- every relation is a CTE in scope or an object of `stackql_inventory` (unqualified names are
  qualified here; other schemas, system catalogs and cross-database names are refused), and CTEs
  must themselves be SELECTs, so a CTE that writes (`WITH d AS (DELETE …)`) is refused;
- functions: an ALLOW-LIST of built-in functions without side effects that read only their
  arguments (aggregates, window, string, date/time, JSON, array, math). A deny-list cannot be made
  complete: stable built-ins such as `table_to_xml` read any table and `current_setting` reads server
  settings, so "not volatile" is not enough. `DENY_REASONS` only explains common refusals;
- operators and type names must be built-in (`pg_catalog`), so a user-defined operator or type
  cannot run code.
The canonical (fully qualified) text is what gets created; `services.inventory_matviews` then checks
the stored definition against the catalog before it commits (defense in depth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.stream import RawStream

from stackql_inventory.db.models import APP_SCHEMA, INVENTORY_SCHEMA
from stackql_inventory.services.errors import ErrorKind, UserFacingError

MAX_SQL_CHARS = 20_000
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Built-in functions a materialized view may call: no side effects, and they read only their arguments.
ALLOWED_FUNCTIONS = frozenset("""
count sum avg min max array_agg string_agg json_agg jsonb_agg json_object_agg jsonb_object_agg bool_and bool_or
every bit_and bit_or bit_xor stddev stddev_pop stddev_samp variance var_pop var_samp percentile_cont
percentile_disc mode corr covar_pop covar_samp any_value
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
lower upper initcap length char_length character_length octet_length bit_length trim btrim ltrim rtrim lpad
rpad left right substr substring position strpos replace translate split_part concat concat_ws format repeat
reverse starts_with regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table
regexp_like regexp_count regexp_substr regexp_instr string_to_array string_to_table array_to_string md5 sha224
sha256 sha384 sha512 encode decode to_char to_number to_date to_timestamp ascii chr overlay quote_literal
quote_ident quote_nullable is_normalized normalize
abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 mod div width_bucket pi degrees
radians gcd lcm scale min_scale trim_scale
now statement_timestamp transaction_timestamp date_trunc date_part extract date_bin age make_date make_time
make_timestamp make_timestamptz make_interval justify_days justify_hours justify_interval isfinite timezone
overlaps
json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text json_array_length
jsonb_array_length json_array_elements json_array_elements_text jsonb_array_elements jsonb_array_elements_text
json_each json_each_text jsonb_each jsonb_each_text json_object_keys jsonb_object_keys json_typeof jsonb_typeof
json_build_object jsonb_build_object json_build_array jsonb_build_array to_json to_jsonb row_to_json
array_to_json json_strip_nulls jsonb_strip_nulls jsonb_pretty jsonb_set jsonb_set_lax jsonb_insert
jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match
json_to_record json_to_recordset jsonb_to_record jsonb_to_recordset json_object jsonb_object
array_length cardinality array_position array_positions array_remove array_replace array_append array_prepend
array_cat array_lower array_upper array_dims array_ndims unnest trim_array generate_series generate_subscripts
num_nulls num_nonnulls host hostmask masklen netmask network broadcast family abbrev inet_same_family
inet_merge
""".split())

# Why some functions are refused (the message names the reason; anything not allowed is refused anyway).
DENY_REASONS: dict[str, str] = {
    "pg_sleep": "it stalls the server", "pg_sleep_for": "it stalls the server",
    "pg_sleep_until": "it stalls the server",
    "set_config": "it changes server settings", "current_setting": "it reads server settings",
    "nextval": "it advances a sequence", "setval": "it changes a sequence", "currval": "it reads sequence state",
    "lastval": "it reads sequence state",
    "dblink": "it connects to another database", "dblink_exec": "it runs SQL in another database",
    "lo_import": "it reads files on the server", "lo_export": "it writes files on the server",
    "lo_get": "it reads large objects", "lo_put": "it writes large objects", "lo_create": "it creates large objects",
    "lo_unlink": "it deletes large objects", "lo_from_bytea": "it creates large objects",
    "pg_read_file": "it reads files on the server", "pg_read_binary_file": "it reads files on the server",
    "pg_ls_dir": "it lists server directories", "pg_stat_file": "it reads file metadata on the server",
    "query_to_xml": "it runs arbitrary SQL", "cursor_to_xml": "it reads an open cursor",
    "table_to_xml": "it reads any table", "schema_to_xml": "it reads a whole schema",
    "database_to_xml": "it reads the whole database",
    "pg_terminate_backend": "it stops other sessions", "pg_cancel_backend": "it cancels other sessions' queries",
    "pg_advisory_lock": "it takes locks", "pg_try_advisory_lock": "it takes locks",
    "pg_notify": "it sends notifications", "txid_current": "it allocates a transaction id",
    "pg_current_xact_id": "it allocates a transaction id", "pg_reload_conf": "it reloads the server configuration",
    "random": "its result changes on every refresh", "gen_random_uuid": "its result changes on every refresh",
    "version": "it reads server details", "pg_stat_get_activity": "it reads other sessions' queries",
}

# Parse-tree nodes a read-only SELECT is made of. Anything else (a statement other than SELECT,
# SELECT INTO, FOR UPDATE, parameters, XMLTABLE, …) is refused.
_ALLOWED_NODES = frozenset({
    "RawStmt", "SelectStmt", "WithClause", "CommonTableExpr", "CTESearchClause", "CTECycleClause", "ResTarget",
    "RangeVar", "RangeSubselect", "RangeFunction", "RangeTableSample", "JoinExpr", "Alias", "ColumnRef", "A_Star",
    "A_Const", "A_Expr", "A_Indirection", "A_Indices", "A_ArrayExpr", "BoolExpr", "BooleanTest", "NullTest",
    "CaseExpr", "CaseWhen", "CoalesceExpr", "MinMaxExpr", "SQLValueFunction", "SubLink", "TypeCast", "TypeName",
    "CollateClause", "FuncCall", "WindowDef", "SortBy", "GroupingSet", "RowExpr", "String", "Integer", "Float",
    "Boolean", "BitString", "JsonObjectConstructor", "JsonArrayConstructor", "JsonArrayQueryConstructor",
    "JsonAggConstructor", "JsonObjectAgg", "JsonArrayAgg", "JsonKeyValue", "JsonValueExpr", "JsonOutput",
    "JsonFormat", "JsonReturning", "JsonIsPredicate", "JsonFuncExpr", "JsonBehavior", "JsonArgument",
    "JsonParseExpr", "JsonScalarExpr", "JsonSerializeExpr", "ColumnDef",
})
_TABLESAMPLE_METHODS = frozenset({"bernoulli", "system"})
_STATEMENT_WORDS = {
    "InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE",
    "IntoClause": "SELECT INTO", "LockingClause": "FOR UPDATE/SHARE", "ParamRef": "a $n parameter",
}


@dataclass(frozen=True)
class ValidatedSelect:
    """A SELECT that passed the checks."""

    canonical_sql: str                 # the SELECT with every relation qualified
    relations: tuple[str, ...]         # stackql_inventory relation names it reads
    functions: tuple[str, ...]         # function names it calls


def _refuse(message: str) -> UserFacingError:
    return UserFacingError(message, ErrorKind.VALIDATION)


def check_view_name(name: str) -> str:
    """The name as given when it is a plain lower-case identifier of at most 63 characters."""
    name = name.strip()
    if not NAME_RE.match(name):
        raise _refuse("Name the view with lower-case letters, digits and underscores (starting with a letter or _), "
                      "at most 63 characters, e.g. `ec2_by_region`.")
    return name


def _names(nodes: tuple | None) -> list[str]:
    return [n.sval for n in nodes or () if isinstance(n, ast.String)]


class _Walker:
    def __init__(self) -> None:
        self.relations: list[str] = []
        self.functions: list[str] = []

    # -- scope-aware traversal
    def visit(self, node: object, scope: frozenset[str]) -> None:
        if isinstance(node, tuple | list):
            for item in node:
                self.visit(item, scope)
            return
        if not isinstance(node, ast.Node):
            return
        kind = type(node).__name__
        if kind not in _ALLOWED_NODES:
            what = _STATEMENT_WORDS.get(kind)
            if what:
                raise _refuse(f"Only a read-only SELECT is allowed, not {what}.")
            if kind.endswith("Stmt"):
                raise _refuse(f"Only a read-only SELECT is allowed, not {kind[:-4].upper()}.")
            raise _refuse(f"This SELECT uses a construct that is not supported in a materialized view here ({kind}).")
        handler = getattr(self, f"_visit_{kind}", None)
        if handler is not None:
            handler(node, scope)
        else:
            self._children(node, scope)

    def _children(self, node: ast.Node, scope: frozenset[str], skip: tuple[str, ...] = ()) -> None:
        for name in node.__slots__:
            if name in skip:
                continue
            self.visit(getattr(node, name, None), scope)

    def _visit_SelectStmt(self, node: ast.SelectStmt, scope: frozenset[str]) -> None:  # noqa: N802
        if node.intoClause is not None:
            raise _refuse("Only a read-only SELECT is allowed, not SELECT INTO (it creates a table).")
        if node.lockingClause:
            raise _refuse("Only a read-only SELECT is allowed, not FOR UPDATE/SHARE (it locks rows).")
        inner = scope
        if node.withClause is not None:
            ctes = node.withClause.ctes or ()
            names = [c.ctename for c in ctes]
            for i, cte in enumerate(ctes):
                # A recursive WITH sees all its CTEs; a plain one only those defined before it.
                visible = scope | frozenset(names if node.withClause.recursive else names[:i])
                query = cte.ctequery
                if not isinstance(query, ast.SelectStmt):
                    what = _STATEMENT_WORDS.get(type(query).__name__, type(query).__name__)
                    raise _refuse(f"The CTE {cte.ctename!r} uses {what}; only SELECT CTEs are allowed.")
                self.visit(query, visible)
                self._children(cte, visible, skip=("ctequery",))
            inner = scope | frozenset(names)
        self._children(node, inner, skip=("withClause", "intoClause", "lockingClause"))

    def _visit_RangeVar(self, node: ast.RangeVar, scope: frozenset[str]) -> None:  # noqa: N802
        if node.catalogname:
            raise _refuse(f"{node.catalogname}.{node.schemaname}.{node.relname}: other databases are not allowed.")
        if node.schemaname is None and node.relname in scope:
            return  # a CTE
        schema = node.schemaname or INVENTORY_SCHEMA
        if schema != INVENTORY_SCHEMA:
            if schema == APP_SCHEMA:
                reason = "it holds the app's own metadata"
            elif schema in ("pg_catalog", "information_schema") or schema.startswith("pg_"):
                reason = "system catalogs are not allowed"
            else:
                reason = "only stackql_inventory objects are allowed"
            raise _refuse(f"{schema}.{node.relname} cannot be used in a materialized view: {reason}.")
        node.schemaname = INVENTORY_SCHEMA
        self.relations.append(node.relname)

    def _visit_FuncCall(self, node: ast.FuncCall, scope: frozenset[str]) -> None:  # noqa: N802
        parts = _names(node.funcname)
        name = parts[-1].lower() if parts else ""
        if len(parts) > 1 and parts[0] != "pg_catalog":
            raise _refuse(f"{'.'.join(parts)}(): only built-in functions are allowed.")
        if name not in ALLOWED_FUNCTIONS:
            reason = DENY_REASONS.get(name) or (
                "it has side effects" if name.startswith(("pg_", "lo_", "dblink")) else "it is not on the allow-list")
            raise _refuse(f"The function {name}() is not allowed in a materialized view: {reason}. Allowed: "
                          "aggregates, window functions, and string, date/time, JSON, array and math functions.")
        self.functions.append(name)
        self._children(node, scope, skip=("funcname",))

    def _visit_A_Expr(self, node: ast.A_Expr, scope: frozenset[str]) -> None:  # noqa: N802
        self._check_operator(node.name if isinstance(node.name, tuple | list) else None)
        self._children(node, scope, skip=("name",))

    def _visit_SubLink(self, node: ast.SubLink, scope: frozenset[str]) -> None:  # noqa: N802
        self._check_operator(node.operName)
        self._children(node, scope, skip=("operName",))

    def _visit_SortBy(self, node: ast.SortBy, scope: frozenset[str]) -> None:  # noqa: N802
        self._check_operator(node.useOp)
        self._children(node, scope, skip=("useOp",))

    def _visit_ColumnDef(self, node: ast.ColumnDef, scope: frozenset[str]) -> None:  # noqa: N802
        if node.raw_default is not None or node.constraints or node.cooked_default is not None:
            raise _refuse("Column definitions in FROM may only name a column and its type.")
        self.visit(node.typeName, scope)

    @staticmethod
    def _check_operator(name: tuple | None) -> None:
        parts = _names(name)
        if len(parts) > 1 and parts[0] != "pg_catalog":
            raise _refuse(f"OPERATOR({'.'.join(parts)}): only built-in operators are allowed.")

    def _visit_TypeName(self, node: ast.TypeName, scope: frozenset[str]) -> None:  # noqa: N802
        parts = _names(node.names)
        if len(parts) > 1 and parts[0] != "pg_catalog":
            raise _refuse(f"The type {'.'.join(parts)} is not allowed: use built-in types.")
        if node.pct_type:
            raise _refuse("%TYPE references are not allowed in a materialized view.")
        self._children(node, scope, skip=("names",))

    def _visit_RangeTableSample(self, node: ast.RangeTableSample, scope: frozenset[str]) -> None:  # noqa: N802
        method = ".".join(_names(node.method)).lower()
        if method not in _TABLESAMPLE_METHODS:
            raise _refuse(f"TABLESAMPLE {method} is not allowed; use BERNOULLI or SYSTEM.")
        self._children(node, scope, skip=("method",))

    def _visit_CollateClause(self, node: ast.CollateClause, scope: frozenset[str]) -> None:  # noqa: N802
        self.visit(node.arg, scope)


def validate_select(text: str) -> ValidatedSelect:
    """Parse and check a materialized view's SELECT; return its fully qualified form.

    Raises VALIDATION with a message naming the first problem (a write, a second statement, a
    schema other than stackql_inventory, a function that is not allowed, …).
    """
    text = (text or "").strip()
    if not text:
        raise _refuse("Write the SELECT that defines the view.")
    if len(text) > MAX_SQL_CHARS:
        raise _refuse(f"The SELECT is longer than {MAX_SQL_CHARS:,} characters.")
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as e:
        raise _refuse(f"The SELECT does not parse: {e}.") from e
    if len(statements) != 1:
        raise _refuse(f"Write exactly one SELECT statement (found {len(statements)}); `;` cannot start another.")
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        what = _STATEMENT_WORDS.get(type(stmt).__name__) or type(stmt).__name__.removesuffix("Stmt").upper()
        raise _refuse(f"Only a read-only SELECT is allowed, not {what}.")
    walker = _Walker()
    walker.visit(stmt, frozenset())
    if not walker.relations:
        raise _refuse("The SELECT reads no stackql_inventory table; a materialized view must be built from them.")
    return ValidatedSelect(RawStream()(stmt), tuple(dict.fromkeys(walker.relations)),
                           tuple(dict.fromkeys(walker.functions)))
