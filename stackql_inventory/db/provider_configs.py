"""SQL for provider credential mappings (`stackql_app.provider_config`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db.models import ProviderConfig


def list_all(session: Session) -> list[ProviderConfig]:
    """Every mapping, grouped by provider."""
    stmt = select(ProviderConfig).order_by(col(ProviderConfig.provider), col(ProviderConfig.env_var_name))
    return list(session.exec(stmt))


def list_for_provider(session: Session, provider: str) -> list[ProviderConfig]:
    """The mappings of one provider, by variable name."""
    stmt = (select(ProviderConfig).where(ProviderConfig.provider == provider)
            .order_by(col(ProviderConfig.env_var_name)))
    return list(session.exec(stmt))


def get(session: Session, mapping_id: int) -> ProviderConfig | None:
    return session.get(ProviderConfig, mapping_id)


def add(session: Session, *, provider: str, env_var_name: str, secret_scope: str, secret_key: str,
        created_by: str) -> ProviderConfig:
    """Insert one mapping and flush, so the unique (provider, env_var_name) constraint is checked now."""
    row = ProviderConfig(provider=provider, env_var_name=env_var_name, secret_scope=secret_scope,
                         secret_key=secret_key, created_by=created_by)
    session.add(row)
    session.flush()
    return row


def update(session: Session, row: ProviderConfig, *, provider: str, env_var_name: str, secret_scope: str,
           secret_key: str) -> ProviderConfig:
    """Change one mapping in place (updated_at set by the database clock)."""
    row.provider, row.env_var_name = provider, env_var_name
    row.secret_scope, row.secret_key = secret_scope, secret_key
    row.updated_at = sa.func.now()  # type: ignore[assignment]
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def delete(session: Session, row: ProviderConfig) -> None:
    session.delete(row)
    session.flush()

