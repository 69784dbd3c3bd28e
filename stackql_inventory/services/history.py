"""The IDE's run history: every interactive run (who, when, text, provider, status, rows, elapsed), per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from stackql_inventory.config import get_settings
from stackql_inventory.db import query_history
from stackql_inventory.db.engine import session_scope
from stackql_inventory.services.errors import ErrorKind, UserFacingError

# Longest query text and error message stored.
MAX_TEXT = 100_000
MAX_ERROR = 4000


class RunStatus(str, Enum):
    """How an interactive run ended."""

    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded run."""

    id: int
    user: str
    provider: str
    query_text: str
    status: str
    row_count: int | None
    elapsed_s: float | None
    error_message: str
    started_at: datetime | None


def _entry(row: query_history.QueryHistory) -> HistoryEntry:
    return HistoryEntry(
        id=row.id or 0, user=row.user_name, provider=row.provider or "", query_text=row.query_text,
        status=row.status, row_count=row.row_count, elapsed_s=row.elapsed_s, error_message=row.error_message or "",
        started_at=row.started_at)


def record(user: str, *, query_text: str, provider: str, status: RunStatus, row_count: int | None = None,
           elapsed_s: float | None = None, error_message: str = "", started_at: datetime | None = None) -> HistoryEntry:
    """Record one run of `user` (error messages arrive already redacted by the engine)."""
    if not user:
        raise UserFacingError("A run cannot be recorded without a user.", ErrorKind.VALIDATION)
    with session_scope() as s:
        row = query_history.insert(
            s, user_name=user, provider=provider or None, query_text=query_text[:MAX_TEXT],
            status=RunStatus(status).value, row_count=row_count, elapsed_s=elapsed_s,
            error_message=(error_message[:MAX_ERROR] or None), started_at=started_at)
        keep = get_settings().history_keep
        if keep:  # a retention limit was asked for: older runs of this user go as new ones arrive
            query_history.prune(s, user, keep=keep)
        return _entry(row)


def recent(user: str, *, limit: int = 50, search: str = "") -> list[HistoryEntry]:
    """The user's latest runs, newest first (optionally those whose text contains `search`)."""
    with session_scope() as s:
        return [_entry(r) for r in query_history.recent(s, user, limit=max(1, min(limit, 500)),
                                                         search=search.strip())]


def get(user: str, history_id: int) -> HistoryEntry:
    """One of the user's runs; NOT_FOUND for unknown ids and other users' runs."""
    with session_scope() as s:
        row = query_history.get(s, history_id)
        if row is None or row.user_name != user:
            raise UserFacingError("That run is not in your history any more.", ErrorKind.NOT_FOUND)
        return _entry(row)
