"""The IDE's use of the engine: pick the statement to run, run it with every provider's credentials, keep
the result server-side, record history, explain errors (missing required parameters), and completion."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

from stackql_inventory.services import catalog as catalog_service
from stackql_inventory.services import credentials, engine, history, identity, result_store, sql_text
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity

log = logging.getLogger(__name__)

_MISSING_PARAMS = re.compile(r"cannot find matching operation", re.I)
# Installing a provider changes the app for everyone: only editors may, from the schema browser or the editor.
_REGISTRY_PULL = re.compile(r"\s*REGISTRY\s+PULL\b", re.I)
_SHOW_IN = re.compile(r"\s*SHOW\s+(?:EXTENDED\s+)?(?:SERVICES|RESOURCES|METHODS)\s+IN\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)
# Items returned to the editor per completion request.
MAX_COMPLETIONS = 300


# ============================================================================ choosing the statement


def choose_statement(text: str, selection: str = "", offset: int | None = None) -> str:
    """What Run / Ctrl+Enter runs: the selection if it holds anything, else the statement under the cursor.

    A selection holding several statements is refused (stackql runs one at a time) by the engine.
    """
    if selection and selection.strip():
        return selection.strip()
    chosen = sql_text.statement_at(text or "", len(text or "") if offset is None else offset)
    if not chosen.strip():
        raise UserFacingError("There is no statement to run: write a query, then run it.", ErrorKind.VALIDATION)
    return chosen


# ============================================================================ running


@dataclass(frozen=True)
class ParamHint:
    """Required parameters of one method of a resource (SHOW METHODS), and those the statement lacks."""

    resource: str
    method: str
    params: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class IdeResult:
    """A successful run as the IDE page shows it (the rows stay in the result store)."""

    result_id: str
    statement: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    row_count: int
    truncated: bool
    row_limit: int | None
    elapsed_s: float
    messages: tuple[str, ...]
    notices: tuple[str, ...]  # credential problems worth knowing about
    finished_at: float  # epoch seconds when the engine returned


class QueryFailed(UserFacingError):
    """A run that failed: stackql's message verbatim, the failing statement, and what could fix it."""

    def __init__(self, error: UserFacingError, statement: str, hints: tuple[ParamHint, ...] = (),
                 notices: tuple[str, ...] = ()):
        super().__init__(error.message, error.kind, detail=error.detail)
        self.statement = statement
        self.hints = hints
        self.notices = notices

    @property
    def status(self) -> history.RunStatus:
        return history.RunStatus.CANCELLED if self.kind is ErrorKind.CANCELLED else history.RunStatus.ERROR


def interactive_env() -> tuple[dict[str, str] | None, tuple[str, ...]]:
    """Credentials of every configured provider for the warm server, and problems to show as notices.

    None (keep the server's current credentials) when the mappings cannot be read at all.
    """
    try:
        env, problems = credentials.resolve_available(credentials.mappings())
    except UserFacingError as e:
        return None, (f"Provider credentials could not be loaded: {e.message}",)
    return env, tuple(p.message for p in problems)


def configured_providers() -> list[str]:
    """Providers with credential mappings (the IDE's provider selector)."""
    return sorted({m.provider for m in credentials.mappings()})


def run(statement: str, *, actor: Identity, session: str, run_id: str, provider: str = "",
        limits: engine.QueryLimits | None = None,
        catalog: catalog_service.Catalog | None = None) -> IdeResult:
    """Run one statement for the IDE and keep its rows in the result store; raises QueryFailed.

    Anyone may run queries; `REGISTRY PULL` (installing a provider for everyone) only editors.
    """
    if _REGISTRY_PULL.match(sql_text.strip_comments(statement)):
        identity.require_editor(actor, "pull providers from the registry")
    _refuse_auto_install(statement, actor, catalog)
    env, notices = interactive_env()
    limits = limits or engine.QueryLimits.from_settings()
    try:
        result = engine.run(statement, env, limits, run_id=run_id, mode=engine.Mode.INTERACTIVE)
    except UserFacingError as e:
        hints = missing_param_hints(statement, e, catalog) if _MISSING_PARAMS.search(e.message) else ()
        raise QueryFailed(e, statement, hints, notices) from None
    finished = time.time()
    stored = result_store.get_store().put(
        session=session, owner=actor.user, columns=result.columns, rows=result.rows, statement=statement,
        provider=provider, truncated=result.truncated, elapsed_s=result.elapsed_s, messages=result.messages)
    return IdeResult(
        result_id=stored.id, statement=statement, columns=stored.columns, types=stored.types,
        row_count=stored.row_count, truncated=result.truncated, row_limit=limits.row_limit,
        elapsed_s=result.elapsed_s, messages=result.messages, notices=notices, finished_at=finished)


def referenced_providers(statement: str) -> list[str]:
    """Providers a statement uses: those of its `p.s.r` tables, and the target of SHOW … IN p[.s[.r]]."""
    names = [fqn.split(".", 1)[0] for fqn in sql_text.referenced_resources(statement)]
    m = _SHOW_IN.match(sql_text.strip_comments(statement))
    if m:
        names.append(m.group(1))
    return list(dict.fromkeys(n.lower() for n in names))


def _refuse_auto_install(statement: str, actor: Identity, catalog: catalog_service.Catalog | None) -> None:
    """Read-only users may not install a provider by querying it (stackql pulls a missing registry provider
    on first use, for everyone): the same rule as REGISTRY PULL. Nothing is refused when the registry
    cannot be listed (then stackql could not install it either)."""
    names = referenced_providers(statement)
    if not names:
        return
    cat = catalog or catalog_service.get_catalog()
    try:
        missing = [n for n in names if not cat.is_installed(n)]
        if not missing:
            return
        in_registry = {e.provider for e in cat.registry_list()}
    except UserFacingError:
        return  # stackql reports the real problem when the statement runs
    for name in missing:
        if name in in_registry:
            identity.require_editor(
                actor, f"install the {name} provider: it is not installed yet, and a query on it would pull it "
                f"from the registry for everyone. An editor can pull it (REGISTRY PULL {name}) first")


# Formats the export endpoint serves (api.py): /api/ide/results/<id>/export.<fmt>.
EXPORT_FORMATS = ("csv", "json")


def export_path(result_id: str, owner: str, fmt: str) -> str:
    """The download path of a whole result as `fmt`, once the store still holds it for `owner`.

    Checked before the browser is sent there: the export is a navigation, so a result the store has let go
    (its memory cap is shared by every session) would otherwise replace the page with the endpoint's error.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserFacingError(f"Export as {' or '.join(EXPORT_FORMATS)}, not {fmt!r}.", ErrorKind.VALIDATION)
    if not result_id:
        raise UserFacingError("There is no result to export: run a query first.", ErrorKind.NOT_FOUND)
    stored = result_store.get(result_id, owner=owner)
    return f"/api/ide/results/{quote(stored.id, safe='')}/export.{fmt}"


def record(actor: Identity, *, statement: str, provider: str, started_at: datetime,
           result: IdeResult | None = None, failure: QueryFailed | None = None) -> None:
    """Add the run to the user's history; a database problem is logged, never raised (the run happened)."""
    try:
        if result is not None:
            history.record(actor.user, query_text=statement, provider=provider, status=history.RunStatus.SUCCESS,
                           row_count=result.row_count, elapsed_s=result.elapsed_s, started_at=started_at)
        elif failure is not None:
            elapsed = (datetime.now(timezone.utc) - started_at).total_seconds()
            history.record(actor.user, query_text=statement, provider=provider, status=failure.status,
                           elapsed_s=elapsed, error_message=failure.message, started_at=started_at)
    except UserFacingError as e:
        log.warning("run not recorded in history: %s", e.message)


def missing_param_hints(statement: str, error: UserFacingError | None = None,
                        catalog: catalog_service.Catalog | None = None) -> tuple[ParamHint, ...]:
    """For each resource of the statement, its SELECT methods' required parameters (SHOW METHODS)."""
    cat = catalog or catalog_service.get_catalog()
    named = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql_text.strip_comments(statement))}
    resources = sql_text.referenced_resources(statement)
    if error is not None:
        m = re.search(r"SHOW METHODS IN (\w+\.\w+\.\w+)", error.detail or error.message)
        if m and m.group(1) not in resources:
            resources.insert(0, m.group(1))
    hints: list[ParamHint] = []
    for fqn in resources:
        try:
            methods = cat.methods(fqn)
        except UserFacingError:
            continue
        selects = sorted((m for m in methods if m.sql_verb == "SELECT"), key=lambda m: len(m.required_params))
        for m in selects:
            if any(h.resource == fqn and h.params == m.required_params for h in hints):
                continue
            missing = tuple(p for p in m.required_params if p.lower() not in named)
            hints.append(ParamHint(fqn, m.name, m.required_params, missing))
    return tuple(hints)


# ============================================================================ editing helpers (pure)


_STOP_WHERE = {"GROUP", "ORDER", "LIMIT", "HAVING", "OFFSET", "UNION", "INTERSECT", "EXCEPT", "WINDOW"}


def add_param(text: str, statement: str, param: str) -> str:
    """`text` with `param = ''` added to `statement`'s WHERE clause (created before GROUP/ORDER/LIMIT if absent).

    The statement is found in `text` by its position among the statements (the first with that text).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", param or ""):
        raise UserFacingError(f"'{str(param)[:40]}' is not a parameter name.", ErrorKind.VALIDATION)
    target = next((s for s in sql_text.statements(text) if s.text == statement.strip()), None)
    if target is None:
        raise UserFacingError("The failing statement is no longer in the editor: run it again, then add the "
                              "parameter.", ErrorKind.NOT_FOUND)
    body = text[target.start:target.end]
    depth, where_end, stop_at = 0, None, None
    for tok in sql_text.tokenize(body):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.keyword == "WHERE" and where_end is None:
            where_end = tok.end
        elif depth == 0 and tok.keyword in _STOP_WHERE and stop_at is None and tok.kind == "word":
            stop_at = tok.start
    if where_end is not None:
        new_body = f"{body[:where_end]} {param} = '' AND{body[where_end:]}"
    elif stop_at is not None:
        new_body = f"{body[:stop_at].rstrip()}\nWHERE {param} = ''\n{body[stop_at:]}"
    else:
        new_body = f"{body.rstrip()}\nWHERE {param} = ''"
    return text[: target.start] + new_body + text[target.end:]


def starter_select(fqn: str, columns: list[str], required: list[str]) -> str:
    """`SELECT <columns> FROM fqn WHERE <param> = '' AND …` — a runnable starting point for a resource."""
    catalog_service.parse_fqn(fqn)
    cols = [_ident(c) for c in columns] or ["*"]
    lines = ["SELECT", ",\n".join(f"  {c}" for c in cols), f"FROM {fqn}"]
    for i, p in enumerate(required):
        lines.append(f"{'WHERE' if i == 0 else '  AND'} {p} = ''")
    return "\n".join(lines) + ";\n"


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


# ============================================================================ completion


@dataclass(frozen=True)
class CompletionItem:
    """One suggestion for the editor."""

    label: str
    kind: str  # provider | service | resource | column
    detail: str = ""
    documentation: str = ""
    insert_text: str = ""


@dataclass(frozen=True)
class Completions:
    """What to offer at the cursor: `kind` is the completion context's kind."""

    kind: str
    items: list[CompletionItem] = field(default_factory=list)
    error: str = ""


def completions(text: str, offset: int, catalog: catalog_service.Catalog | None = None) -> Completions:
    """Catalog names for the cursor position (after FROM/JOIN/DESCRIBE: providers → services → resources;
    elsewhere the columns of the resources the statement names). Catalog answers are cached with a TTL."""
    ctx = sql_text.completion_context(text or "", offset)
    cat = catalog or catalog_service.get_catalog()
    items: list[CompletionItem] = []
    try:
        if ctx.kind == "provider":
            installed = [p.name for p in cat.providers()]
            items = [CompletionItem(p, "provider", "provider") for p in installed]
            try:
                registry = cat.registry_list()
            except UserFacingError:
                registry = []
            items += [CompletionItem(e.provider, "provider", "not installed: installs on first use")
                      for e in registry if e.provider not in installed]
        elif ctx.kind == "service":
            items = [CompletionItem(s.name, "service", s.title) for s in cat.services(ctx.provider)]
        elif ctx.kind == "resource":
            items = [CompletionItem(r.name, "resource", r.id, r.description)
                     for r in cat.resources(ctx.provider, ctx.service)]
        elif ctx.kind == "column":
            seen: set[str] = set()
            for fqn in ctx.resources:
                for c in cat.columns(fqn):
                    if c.name in seen:
                        continue
                    seen.add(c.name)
                    items.append(CompletionItem(c.name, "column", f"{c.type} · {fqn}", c.description))
    except UserFacingError as e:
        return Completions(ctx.kind, [], e.message)
    partial = ctx.partial.lower()
    if partial:
        items = [i for i in items if i.label.lower().startswith(partial)] + \
                [i for i in items if partial in i.label.lower() and not i.label.lower().startswith(partial)]
    return Completions(ctx.kind, items[:MAX_COMPLETIONS])


# ============================================================================ schema browser


@dataclass(frozen=True)
class SchemaNode:
    """One node of the schema browser: a provider, service, resource or column."""

    kind: str  # provider | service | resource | column | registry
    name: str  # the label
    path: str  # p, p.s, p.s.r, or p.s.r.column
    detail: str = ""  # title, type or version
    description: str = ""


def schema_children(path: str, catalog: catalog_service.Catalog | None = None) -> list[SchemaNode]:
    """Children of a schema browser node ('' = installed providers)."""
    cat = catalog or catalog_service.get_catalog()
    parts = path.split(".") if path else []
    if not parts:
        return [SchemaNode("provider", p.name, p.name, p.version) for p in cat.providers()]
    if len(parts) == 1:
        return [SchemaNode("service", s.name, f"{parts[0]}.{s.name}", s.title) for s in cat.services(parts[0])]
    if len(parts) == 2:
        return [SchemaNode("resource", r.name, f"{parts[0]}.{parts[1]}.{r.name}", "", r.description)
                for r in cat.resources(parts[0], parts[1])]
    if len(parts) == 3:
        return [SchemaNode("column", c.name, f"{path}.{c.name}", c.type, c.description) for c in cat.columns(path)]
    return []


def registry_providers(catalog: catalog_service.Catalog | None = None) -> list[SchemaNode]:
    """Providers in the registry that are not installed yet (offered with REGISTRY PULL)."""
    cat = catalog or catalog_service.get_catalog()
    installed = {p.name for p in cat.providers()}
    return [SchemaNode("registry", e.provider, e.provider, ", ".join(e.versions))
            for e in cat.registry_list() if e.provider not in installed]


def starter_select_for(fqn: str, catalog: catalog_service.Catalog | None = None) -> str:
    """A starter SELECT for a resource: its columns and a WHERE per required parameter."""
    cat = catalog or catalog_service.get_catalog()
    return starter_select(fqn, [c.name for c in cat.columns(fqn)], cat.required_params(fqn))


def pull_provider(actor: Identity, provider: str, catalog: catalog_service.Catalog | None = None) -> str:
    """REGISTRY PULL a provider (editors only: it installs it for everyone); returns stackql's message."""
    identity.require_editor(actor, "pull providers from the registry")
    return (catalog or catalog_service.get_catalog()).pull(provider)


