"""Provider credentials: resolve the mapped env vars of providers from the secrets backend at the moment of use."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass

from stackql_inventory.db import provider_configs
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services import secrets
from stackql_inventory.services.errors import ErrorKind, UserFacingError

# Per-process key for fingerprints: lets callers notice a changed value without keeping any value.
_FINGERPRINT_KEY = os.urandom(32)


@dataclass(frozen=True)
class Mapping:
    """One env var of one provider and where its value lives (names only)."""

    provider: str
    env_var: str
    scope: str
    key: str


def mappings(providers: Iterable[str] | None = None) -> list[Mapping]:
    """The configured mappings, for `providers` (None: every provider)."""
    wanted = None if providers is None else {p for p in providers if p}
    with session_scope() as s:
        rows = provider_configs.list_all(s)
    return [
        Mapping(r.provider, r.env_var_name, r.secret_scope, r.secret_key)
        for r in rows
        if wanted is None or r.provider in wanted
    ]


def resolve(items: Iterable[Mapping], backend: secrets.SecretsBackend | None = None) -> dict[str, str]:
    """Read the value of every mapping now; a missing or unreadable secret is an AUTH error naming it."""
    backend = backend or secrets.backend_for()
    env: dict[str, str] = {}
    for m in items:
        try:
            env[m.env_var] = backend.get(m.scope, m.key)
        except UserFacingError as e:
            raise UserFacingError(
                f"The credential {m.env_var} of provider '{m.provider}' cannot be read from secret "
                f"'{m.scope}/{m.key}': {e.message}",
                ErrorKind.AUTH if e.kind in (ErrorKind.NOT_FOUND, ErrorKind.VALIDATION) else e.kind,
            ) from e
    return env


@dataclass(frozen=True)
class Problem:
    """A mapping whose secret could not be read (message names scope/key, never a value)."""

    mapping: Mapping
    message: str


def resolve_available(
    items: Iterable[Mapping], backend: secrets.SecretsBackend | None = None
) -> tuple[dict[str, str], list[Problem]]:
    """Like `resolve`, but skip unreadable secrets and report them (the IDE keeps working for the rest)."""
    backend = backend or secrets.backend_for()
    env: dict[str, str] = {}
    problems: list[Problem] = []
    for m in items:
        try:
            env[m.env_var] = backend.get(m.scope, m.key)
        except UserFacingError as e:
            problems.append(Problem(m, f"{m.provider} {m.env_var}: secret '{m.scope}/{m.key}': {e.message}"))
    return env, problems


def env_for_providers(providers: Iterable[str]) -> dict[str, str]:
    """The env vars (with values) of exactly these providers, for one batch run."""
    return resolve(mappings(providers))


def env_for_all_providers() -> dict[str, str]:
    """The env vars (with values) of every configured provider, for the warm interactive engine."""
    return resolve(mappings())


def fingerprint(env: dict[str, str]) -> str:
    """A keyed digest of names and values: equal iff the credentials are unchanged (within this process)."""
    mac = hmac.new(_FINGERPRINT_KEY, digestmod=hashlib.sha256)
    for name in sorted(env):
        mac.update(name.encode() + b"\0" + env[name].encode() + b"\0")
    return mac.hexdigest()
