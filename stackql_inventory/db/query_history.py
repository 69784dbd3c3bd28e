"""SQL for the IDE's run history (`stackql_app.query_history`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from stackql_inventory.db.models import QueryHistory


def insert(session: Session, *, user_name: str, provider: str | None, query_text: str, status: str,
           row_count: int | None, elapsed_s: float | None, error_message: str | None,
           started_at: datetime | None = None) -> QueryHistory:
    """Add one run; returns it with its id and timestamps."""
    row = QueryHistory(user_name=user_name, provider=provider, query_text=query_text, status=status,
                       row_count=row_count, elapsed_s=elapsed_s, error_message=error_message)
    if started_at is not None:
        row.started_at = started_at
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def recent(session: Session, user_name: str, *, limit: int = 50, search: str = "") -> list[QueryHistory]:
    """The user's runs, newest first, optionally only those whose text contains `search` (case-insensitive)."""
    stmt = select(QueryHistory).where(QueryHistory.user_name == user_name)
    if search:
        stmt = stmt.where(col(QueryHistory.query_text).ilike(f"%{_escape_like(search)}%", escape="\\"))
    stmt = stmt.order_by(col(QueryHistory.started_at).desc(), col(QueryHistory.id).desc()).limit(limit)
    return list(session.exec(stmt))


def get(session: Session, history_id: int) -> QueryHistory | None:
    return session.get(QueryHistory, history_id)


def count_for_user(session: Session, user_name: str) -> int:
    stmt = select(sa.func.count()).select_from(QueryHistory).where(QueryHistory.user_name == user_name)
    return int(session.exec(stmt).one())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prune(session: Session, user_name: str, *, keep: int) -> int:
    """Delete the user's runs beyond the newest `keep`; returns how many went."""
    newest = (
        select(QueryHistory.id).where(QueryHistory.user_name == user_name)
        .order_by(col(QueryHistory.started_at).desc(), col(QueryHistory.id).desc()).limit(keep)
    )
    stmt = sa.delete(QueryHistory).where(QueryHistory.user_name == user_name, col(QueryHistory.id).not_in(newest))
    return session.execute(stmt).rowcount or 0
