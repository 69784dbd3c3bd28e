"""SQL for provider credential mappings (`stackql_app.provider_config`)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from stackql_inventory.db.models import ProviderConfig


def list_all(session: Session) -> list[ProviderConfig]:
    """Every mapping, grouped by provider."""
    stmt = select(ProviderConfig).order_by(col(ProviderConfig.provider), col(ProviderConfig.env_var_name))
    return list(session.exec(stmt))
