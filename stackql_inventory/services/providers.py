"""Provider credential mappings: env var name → secret scope/key (never the value)."""

from __future__ import annotations

from dataclasses import dataclass

from stackql_inventory.db import provider_configs
from stackql_inventory.db.engine import session_scope


@dataclass(frozen=True)
class MappingView:
    """One credential mapping."""

    id: int
    provider: str
    env_var_name: str
    secret_scope: str
    secret_key: str
    created_by: str


def list_mappings() -> list[MappingView]:
    """Every mapping, by provider then variable."""
    with session_scope() as s:
        return [
            MappingView(
                id=m.id or 0, provider=m.provider, env_var_name=m.env_var_name,
                secret_scope=m.secret_scope, secret_key=m.secret_key, created_by=m.created_by,
            )
            for m in provider_configs.list_all(s)
        ]
