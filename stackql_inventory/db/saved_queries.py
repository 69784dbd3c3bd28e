"""SQL for saved queries (`stackql_app.queries`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db.models import SavedQuery, Schedule


def list_all(session: Session, *, search: str = "", limit: int = 500) -> list[SavedQuery]:
    """Saved queries, newest first, optionally filtered by a case-insensitive search on name/description/text."""
    stmt = select(SavedQuery)
    if search:
        pattern = f"%{_escape_like(search)}%"
        stmt = stmt.where(
            sa.or_(col(SavedQuery.name).ilike(pattern, escape="\\"),
                   col(SavedQuery.description).ilike(pattern, escape="\\"),
                   col(SavedQuery.query_text).ilike(pattern, escape="\\"))
        )
    stmt = stmt.order_by(col(SavedQuery.updated_at).desc(), col(SavedQuery.id).desc()).limit(limit)
    return list(session.exec(stmt))


def get(session: Session, query_id: int) -> SavedQuery | None:
    return session.get(SavedQuery, query_id)


def get_by_name(session: Session, owner: str, name: str) -> SavedQuery | None:
    stmt = select(SavedQuery).where(SavedQuery.created_by == owner, SavedQuery.name == name)
    return session.exec(stmt).first()


def names_like(session: Session, owner: str, prefix: str) -> set[str]:
    """The owner's query names starting with `prefix` (to pick a free copy name)."""
    stmt = select(SavedQuery.name).where(
        SavedQuery.created_by == owner, col(SavedQuery.name).startswith(prefix, autoescape=True))
    return set(session.exec(stmt))


def insert(session: Session, *, name: str, description: str, query_text: str, provider: str | None,
           created_by: str) -> SavedQuery:
    row = SavedQuery(name=name, description=description, query_text=query_text, provider=provider,
                     created_by=created_by)
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def update(session: Session, row: SavedQuery, *, name: str, description: str, query_text: str,
           provider: str | None) -> SavedQuery:
    row.name, row.description, row.query_text, row.provider = name, description, query_text, provider
    row.updated_at = sa.func.now()
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def delete(session: Session, row: SavedQuery) -> None:
    session.delete(row)
    session.flush()


def schedule_count(session: Session, query_id: int) -> int:
    """Schedules that run this query (they keep it from being deleted)."""
    stmt = select(sa.func.count()).select_from(Schedule).where(Schedule.query_id == query_id)
    return int(session.exec(stmt).one())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
