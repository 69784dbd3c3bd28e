"""Provider credential mappings: env var name → secret scope/key (never the value), their checks and tests."""

# A value is read from the secrets backend only where it is used: `set_value` writes one (local
# backend), `test_connection` hands a provider's values to a batch stackql child. Validation asks the
# backend about existence and access (file metadata, or `list_secrets` on Databricks) and never reads
# a value. Nothing here returns, logs or stores a value.

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from stackql_inventory.config import CHILD_ENV_PASSTHROUGH, get_settings
from stackql_inventory.db import provider_configs
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services import credentials, engine, identity, provider_presets, secrets
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact
from stackql_inventory.services.identity import Identity

log = logging.getLogger(__name__)

_ENV_VAR = re.compile(r"[A-Z_][A-Z0-9_]*")
_PROVIDER = re.compile(r"[a-z][a-z0-9_]*")
_MAX_NAME = 128
# Variables every stackql child already gets from the app (config.child_base_env) or that change how a
# process loads code or where it runs: a mapping must not replace them.
_RESERVED = frozenset({name.upper() for name in CHILD_ENV_PASSTHROUGH} | {"SHELL", "PWD"})
_RESERVED_PREFIXES = ("LD_", "DYLD_", "PYTHON", "STACKQL_INVENTORY_")
# How many rows a probe may return; it only needs to prove the credentials work.
_PROBE_ROW_LIMIT = 1000
_TEST_TIMEOUT_S = 120.0
# Secret checks in flight at once (each is one `list_secrets` call on Databricks).
_VALIDATE_WORKERS = 8

STATE_LABELS = {
    secrets.SecretState.OK: "OK",
    secrets.SecretState.MISSING: "missing",
    secrets.SecretState.NO_PERMISSION: "no permission",
    secrets.SecretState.ERROR: "error",
}


@dataclass(frozen=True)
class MappingView:
    """One credential mapping."""

    id: int
    provider: str
    env_var_name: str
    secret_scope: str
    secret_key: str
    created_by: str


@dataclass(frozen=True)
class MappingInput:
    """A mapping as typed into the form (names only)."""

    env_var_name: str
    secret_scope: str
    secret_key: str


@dataclass(frozen=True)
class MappingStatus:
    """Whether a mapping's secret can be used, without its value: state is ok|missing|no_permission|error."""

    mapping_id: int
    provider: str
    env_var_name: str
    state: str
    label: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    """One query of a connection test."""

    label: str
    query: str
    ok: bool
    rows: int | None  # rows returned (None when it failed)
    message: str  # what it found, or stackql's error (redacted) with what to do


@dataclass(frozen=True)
class ConnectionTest:
    """The outcome of testing a provider's credentials with real queries."""

    provider: str
    ok: bool
    summary: str  # e.g. "12 services; 3 IAM users (alice, bob, carol)", or the first failure
    detail: str  # stackql's full error text (redacted) when it says more than the summary, else ""
    checks: tuple[CheckResult, ...]
    elapsed_s: float


def _view(m) -> MappingView:  # noqa: ANN001 - a ProviderConfig row
    return MappingView(id=m.id or 0, provider=m.provider, env_var_name=m.env_var_name,
                       secret_scope=m.secret_scope, secret_key=m.secret_key, created_by=m.created_by)


def list_mappings() -> list[MappingView]:
    """Every mapping, by provider then variable."""
    with session_scope() as s:
        return [_view(m) for m in provider_configs.list_all(s)]


def backend_kind() -> str:
    """'local' or 'databricks': where secret values live (the page offers a value field only for local)."""
    return get_settings().secrets_backend.value


def cli_put_command(scope: str, key: str) -> str:
    """The Databricks CLI command that stores a secret (it prompts for the value, which then stays off the app)."""
    return f"databricks secrets put-secret {scope} {key}"


def default_scope() -> str:
    """The secret scope new mappings start in (STACKQL_INVENTORY_SECRET_SCOPE)."""
    return get_settings().secret_scope


def draft_from_preset(provider: str, scope: str | None = None) -> list[MappingInput]:
    """The form lines a preset fills in: each required variable → `<scope>/<variable-as-key>`."""
    p = provider_presets.preset(provider)
    if p is None:
        return []
    scope = scope or default_scope()
    return [MappingInput(v.name, scope, provider_presets.default_secret_key(v.name)) for v in p.required_variables]


# ----------------------------------------------------------------------------------------- validation
def _clean_provider(provider: str) -> str:
    name = (provider or "").strip()
    if not name:
        raise UserFacingError("Enter the provider name (e.g. aws), then save.", ErrorKind.VALIDATION)
    if len(name) > 64 or not _PROVIDER.fullmatch(name):
        raise UserFacingError(
            f"'{name[:64]}' is not a valid provider name: use lower-case letters, digits and '_', starting with a "
            "letter (e.g. aws, databricks_workspace), then save.", ErrorKind.VALIDATION)
    return name


def _clean_env_var(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise UserFacingError("Enter the environment variable name (e.g. AWS_ACCESS_KEY_ID), then save.",
                              ErrorKind.VALIDATION)
    if len(name) > _MAX_NAME or not _ENV_VAR.fullmatch(name):
        raise UserFacingError(
            f"'{name[:64]}' is not a valid environment variable name: use upper-case letters, digits and '_', not "
            "starting with a digit (e.g. AWS_ACCESS_KEY_ID), then save.", ErrorKind.VALIDATION)
    if name in _RESERVED or name.startswith(_RESERVED_PREFIXES):
        raise UserFacingError(
            f"{name} cannot be mapped: the app sets it for stackql itself (or it changes how programs load). "
            "Use the variable name the provider reads, then save.", ErrorKind.VALIDATION)
    return name


def _clean_input(item: MappingInput) -> MappingInput:
    env_var = _clean_env_var(item.env_var_name)
    scope = (item.secret_scope or "").strip()
    key = (item.secret_key or "").strip()
    if not scope:
        raise UserFacingError(f"Enter the secret scope for {env_var}, then save.", ErrorKind.VALIDATION)
    if not key:
        raise UserFacingError(f"Enter the secret key for {env_var}, then save.", ErrorKind.VALIDATION)
    secrets.validate_name(scope, "secret scope")
    secrets.validate_name(key, "secret key")
    return MappingInput(env_var, scope, key)


def _numbered(index: int, total: int, e: UserFacingError) -> UserFacingError:
    if total <= 1:
        return e
    return UserFacingError(f"Variable {index}: {e.message}", e.kind, detail=e.detail)


def _duplicate(provider: str, env_var: str, scope: str, key: str) -> UserFacingError:
    return UserFacingError(
        f"{env_var} is already mapped for {provider} (to {scope}/{key}). Edit that mapping instead, or choose "
        "another variable.", ErrorKind.CONFLICT)


def _conflict_from_integrity(e: sa.exc.IntegrityError, provider: str) -> UserFacingError:
    # Another session saved the same variable between our check and our insert.
    log.info("provider mapping insert lost a race provider=%s", provider)
    return UserFacingError(
        f"A variable in this form was just mapped for {provider} by someone else. Reload the page, then "
        "save again.", ErrorKind.CONFLICT)


# ----------------------------------------------------------------------------------------- writes
def add_mappings(actor: Identity, provider: str, items: Sequence[MappingInput]) -> list[MappingView]:
    """Add one or more mappings for `provider` at once; any invalid or duplicate line saves nothing."""
    identity.require_editor(actor, "add provider credentials")
    provider = _clean_provider(provider)
    if not items:
        raise UserFacingError("Add at least one variable to map, then save.", ErrorKind.VALIDATION)
    cleaned: list[MappingInput] = []
    for i, item in enumerate(items, 1):
        try:
            cleaned.append(_clean_input(item))
        except UserFacingError as e:
            raise _numbered(i, len(items), e) from None
    seen: set[str] = set()
    for i, item in enumerate(cleaned, 1):
        if item.env_var_name in seen:
            raise _numbered(i, len(cleaned), UserFacingError(
                f"{item.env_var_name} appears twice in this form. Remove one of them, then save.",
                ErrorKind.VALIDATION))
        seen.add(item.env_var_name)
    try:
        with session_scope() as s:
            existing = {m.env_var_name: m for m in provider_configs.list_for_provider(s, provider)}
            for i, item in enumerate(cleaned, 1):
                if item.env_var_name in existing:
                    m = existing[item.env_var_name]
                    raise _numbered(i, len(cleaned),
                                    _duplicate(provider, item.env_var_name, m.secret_scope, m.secret_key))
            rows = [provider_configs.add(s, provider=provider, env_var_name=item.env_var_name,
                                         secret_scope=item.secret_scope, secret_key=item.secret_key,
                                         created_by=actor.user) for item in cleaned]
            views = [_view(r) for r in rows]
    except sa.exc.IntegrityError as e:
        raise _conflict_from_integrity(e, provider) from None
    log.info("provider_mappings_added provider=%s vars=%s by=%s", provider,
             ",".join(v.env_var_name for v in views), actor.user)
    return views


def update_mapping(actor: Identity, mapping_id: int, provider: str, item: MappingInput) -> MappingView:
    """Change one mapping (provider, variable, scope or key); a duplicate of another mapping is refused."""
    identity.require_editor(actor, "change provider credentials")
    provider = _clean_provider(provider)
    item = _clean_input(item)
    try:
        with session_scope() as s:
            row = provider_configs.get(s, mapping_id)
            if row is None:
                raise _not_found(mapping_id)
            for other in provider_configs.list_for_provider(s, provider):
                if other.id != mapping_id and other.env_var_name == item.env_var_name:
                    raise _duplicate(provider, item.env_var_name, other.secret_scope, other.secret_key)
            row = provider_configs.update(s, row, provider=provider, env_var_name=item.env_var_name,
                                          secret_scope=item.secret_scope, secret_key=item.secret_key)
            view = _view(row)
    except sa.exc.IntegrityError as e:
        raise _conflict_from_integrity(e, provider) from None
    log.info("provider_mapping_updated id=%s provider=%s var=%s by=%s", mapping_id, provider,
             view.env_var_name, actor.user)
    return view


def delete_mapping(actor: Identity, mapping_id: int) -> MappingView:
    """Remove one mapping; the secret it pointed to is kept (other mappings may use it)."""
    identity.require_editor(actor, "delete provider credentials")
    with session_scope() as s:
        row = provider_configs.get(s, mapping_id)
        if row is None:
            raise _not_found(mapping_id)
        view = _view(row)
        provider_configs.delete(s, row)
    log.info("provider_mapping_deleted id=%s provider=%s var=%s by=%s", mapping_id, view.provider,
             view.env_var_name, actor.user)
    return view


def _not_found(mapping_id: int) -> UserFacingError:
    return UserFacingError(
        f"Mapping {mapping_id} no longer exists (someone may have deleted it). Reload the page.",
        ErrorKind.NOT_FOUND)


def _get(mapping_id: int) -> MappingView:
    with session_scope() as s:
        row = provider_configs.get(s, mapping_id)
        if row is None:
            raise _not_found(mapping_id)
        return _view(row)


def set_value(actor: Identity, mapping_id: int, value: str,
              backend: secrets.SecretsBackend | None = None) -> MappingStatus:
    """Store the value of a mapping's secret (local backend only) and return the mapping's new status.

    Surrounding whitespace is dropped (a pasted token often carries a newline). On the Databricks
    backend this raises a CONFIG error naming the `databricks secrets put-secret` command to run.
    """
    identity.require_editor(actor, "set secret values")
    view = _get(mapping_id)
    backend = backend or secrets.backend_for()
    if not isinstance(value, str) or not value.strip():
        raise UserFacingError(f"Enter the value of {view.env_var_name}, then save.", ErrorKind.VALIDATION)
    if "\x00" in value:
        raise UserFacingError(f"The value of {view.env_var_name} contains a NUL character. Paste it again, "
                              "then save.", ErrorKind.VALIDATION)
    backend.put(view.secret_scope, view.secret_key, value.strip())
    log.info("provider_secret_set provider=%s var=%s scope=%s key=%s by=%s", view.provider, view.env_var_name,
             view.secret_scope, view.secret_key, actor.user)
    return _status(view, backend)


# ----------------------------------------------------------------------------------------- checks
def _status(m: MappingView, backend: secrets.SecretsBackend) -> MappingStatus:
    st = backend.status(m.secret_scope, m.secret_key)
    return MappingStatus(m.id, m.provider, m.env_var_name, st.state.value, STATE_LABELS[st.state], st.message)


def validate(provider: str | None = None, backend: secrets.SecretsBackend | None = None, *,
             items: Sequence[MappingView] | None = None, workers: int = _VALIDATE_WORKERS) -> list[MappingStatus]:
    """Status of every mapping (of `provider`, or all): does its secret exist and may the app read it.

    Only metadata is consulted (file presence and access, or the scope's key list on Databricks);
    no value is read. `items` skips loading the mappings; checks run on up to `workers` threads
    (one Databricks call each), in the mappings' order.
    """
    backend = backend or secrets.backend_for()
    chosen = [m for m in (list_mappings() if items is None else items) if provider is None or m.provider == provider]
    if workers > 1 and len(chosen) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(chosen)), thread_name_prefix="validate") as pool:
            statuses = list(pool.map(lambda m: _status(m, backend), chosen))
    else:
        statuses = [_status(m, backend) for m in chosen]
    log.info("provider_mappings_validated provider=%s ok=%d total=%d", provider or "*",
             sum(s.state == secrets.SecretState.OK.value for s in statuses), len(statuses))
    return statuses


def _limits() -> engine.QueryLimits:
    return engine.QueryLimits(row_limit=_PROBE_ROW_LIMIT,
                              timeout_s=min(get_settings().query_timeout_s, _TEST_TIMEOUT_S))


def _run_check(label: str, query: str, env: Mapping[str, str], values: list[str],
               noun: str | None = None) -> tuple[CheckResult, str]:
    """Run one query on the batch path with exactly `env`; return the check and stackql's full error text.

    With a `noun` the message counts rows as that and names the first few (the probe); without one it
    counts services.
    """
    try:
        result = engine.run(query, env, _limits(), mode=engine.Mode.BATCH)
    except UserFacingError as e:
        # The message carries stackql's first line; the detail is worth showing only when it says more.
        detail = e.detail if e.detail and e.detail not in e.message else ""
        return CheckResult(label, query, False, None, redact(e.message, values)), redact(detail, values)
    more = "+" if result.truncated else ""
    if noun is None:
        message = f"{result.row_count}{more} service{'' if result.row_count == 1 else 's'}"
    else:
        message = f"{result.row_count}{more} {noun}"
        names = [str(r[0]) for r in result.rows[:3] if r and r[0] is not None]
        if names:
            message += f" ({', '.join(names)}{', …' if result.row_count > 3 else ''})"
    return CheckResult(label, query, True, result.row_count, redact(message, values)), ""


def test_connection(provider: str, params: Mapping[str, str] | None = None) -> ConnectionTest:
    """Run `SHOW SERVICES IN <provider>` and the preset's small authenticated SELECT with the provider's
    mapped credentials, on the batch path (exactly this provider's variables reach stackql).

    Query failures come back as a ConnectionTest with ok=False and stackql's error (secret values
    redacted); a bad parameter or an unreadable secret raises a UserFacingError.
    """
    provider = _clean_provider(provider)
    services_q = provider_presets.services_query(provider)
    preset = provider_presets.preset(provider)
    probe_q = provider_presets.probe_query(preset, params or {}) if preset else None
    t0 = time.monotonic()
    mapped = credentials.mappings([provider])
    env = credentials.resolve(mapped)
    values = list(env.values())

    checks: list[CheckResult] = []
    check, detail = _run_check("Services", services_q, env, values)
    checks.append(check)
    if check.ok and probe_q is not None and preset is not None:
        check, detail = _run_check("Test query", probe_q, env, values, noun=preset.probe.noun)
        checks.append(check)
    ok = all(c.ok for c in checks)
    if ok:
        summary = "; ".join(c.message for c in checks)
        if probe_q is None:
            summary += (f". No authenticated test query is defined for {provider}: run a query in the IDE to "
                        "check its credentials.")
    else:
        summary = next(c for c in checks if not c.ok).message + _unmapped_hint(preset, mapped)
    elapsed = time.monotonic() - t0
    log.info("provider_test provider=%s ok=%s checks=%d elapsed_s=%.2f", provider, ok, len(checks), elapsed)
    return ConnectionTest(provider, ok, summary, detail, tuple(checks), elapsed)


def _unmapped_hint(preset: provider_presets.Preset | None, mapped: list[credentials.Mapping]) -> str:
    if preset is None:
        return ""
    names = {m.env_var for m in mapped}
    missing = [v.name for v in preset.required_variables if v.name not in names]
    return f" (Not mapped yet: {', '.join(missing)}.)" if missing else ""
