"""Saved queries: the query library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stackql_inventory.db import saved_queries
from stackql_inventory.db.engine import session_scope


@dataclass(frozen=True)
class SavedQueryView:
    """A saved query as lists show it."""

    id: int
    name: str
    description: str
    provider: str
    query_text: str
    created_by: str
    updated_at: datetime | None


def list_queries(search: str = "") -> list[SavedQueryView]:
    """Every saved query (newest first), filtered by `search` on name and description."""
    with session_scope() as s:
        rows = saved_queries.list_all(s, search=search.strip())
        return [
            SavedQueryView(
                id=q.id or 0, name=q.name, description=q.description, provider=q.provider or "",
                query_text=q.query_text, created_by=q.created_by, updated_at=q.updated_at,
            )
            for q in rows
        ]
