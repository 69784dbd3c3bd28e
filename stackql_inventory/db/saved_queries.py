"""SQL for saved queries (`stackql_app.queries`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db.models import SavedQuery


def list_all(session: Session, *, search: str = "", limit: int = 500) -> list[SavedQuery]:
    """Saved queries, newest first, optionally filtered by a case-insensitive search on name/description."""
    stmt = select(SavedQuery)
    if search:
        pattern = f"%{search}%"
        stmt = stmt.where(
            sa.or_(col(SavedQuery.name).ilike(pattern), col(SavedQuery.description).ilike(pattern))
        )
    stmt = stmt.order_by(col(SavedQuery.updated_at).desc(), col(SavedQuery.id).desc()).limit(limit)
    return list(session.exec(stmt))


def get(session: Session, query_id: int) -> SavedQuery | None:
    return session.get(SavedQuery, query_id)


def get_by_name(session: Session, owner: str, name: str) -> SavedQuery | None:
    stmt = select(SavedQuery).where(SavedQuery.created_by == owner, SavedQuery.name == name)
    return session.exec(stmt).first()
