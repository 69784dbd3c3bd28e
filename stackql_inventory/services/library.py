"""Saved queries: the query library (list, save, update in place, duplicate, delete)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from stackql_inventory.db import saved_queries
from stackql_inventory.db.engine import session_scope
from stackql_inventory.db.models import SavedQuery
from stackql_inventory.services import identity
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity

MAX_NAME = 120
MAX_DESCRIPTION = 2000
MAX_TEXT = 100_000
_PROVIDER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")


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


@dataclass(frozen=True)
class QueryDraft:
    """What the save dialog submits."""

    name: str
    description: str
    provider: str
    query_text: str


def _view(q: SavedQuery) -> SavedQueryView:
    return SavedQueryView(
        id=q.id or 0, name=q.name, description=q.description, provider=q.provider or "",
        query_text=q.query_text, created_by=q.created_by, updated_at=q.updated_at,
    )


def list_queries(search: str = "") -> list[SavedQueryView]:
    """Every saved query (newest first), filtered by `search` on name, description and text."""
    with session_scope() as s:
        return [_view(q) for q in saved_queries.list_all(s, search=search.strip())]


def get(query_id: int) -> SavedQueryView:
    """One saved query; NOT_FOUND when it was deleted."""
    with session_scope() as s:
        return _view(_require(s, query_id))


def validate(draft: QueryDraft) -> QueryDraft:
    """The draft trimmed, or a VALIDATION error saying what to fix."""
    name = " ".join((draft.name or "").split())
    description = (draft.description or "").strip()
    provider = (draft.provider or "").strip()
    text = (draft.query_text or "").strip()
    if not name:
        raise UserFacingError("Give the query a name.", ErrorKind.VALIDATION)
    if len(name) > MAX_NAME:
        raise UserFacingError(f"The name is {len(name)} characters long: keep it to {MAX_NAME}.", ErrorKind.VALIDATION)
    if len(description) > MAX_DESCRIPTION:
        raise UserFacingError(f"The description is {len(description)} characters long: keep it to "
                              f"{MAX_DESCRIPTION}.", ErrorKind.VALIDATION)
    if not text:
        raise UserFacingError("The query is empty: write the StackQL to save first.", ErrorKind.VALIDATION)
    if len(text) > MAX_TEXT:
        raise UserFacingError(f"The query is {len(text):,} characters long: the library keeps up to {MAX_TEXT:,}.",
                              ErrorKind.VALIDATION)
    if provider and not _PROVIDER.fullmatch(provider):
        raise UserFacingError(f"'{provider[:40]}' is not a provider name (e.g. aws, google, github).",
                              ErrorKind.VALIDATION)
    return QueryDraft(name=name, description=description, provider=provider, query_text=text)


def _clash(name: str) -> UserFacingError:
    return UserFacingError(
        f"You already have a query named '{name}'. Choose another name, or open that query and update it.",
        ErrorKind.CONFLICT)


def _require(s, query_id: int) -> SavedQuery:
    row = saved_queries.get(s, query_id)
    if row is None:
        raise UserFacingError("That query is no longer in the library (someone deleted it).", ErrorKind.NOT_FOUND)
    return row


def _require_owner(actor: Identity, row: SavedQuery, action: str) -> None:
    if row.created_by != actor.user:
        raise UserFacingError(
            f"'{row.name}' belongs to {row.created_by}, so you cannot {action} it. Duplicate it to make your own copy.",
            ErrorKind.PERMISSION)


def save(actor: Identity, draft: QueryDraft) -> SavedQueryView:
    """Save a new query owned by `actor`; names are unique per owner."""
    identity.require_editor(actor, "save queries")
    d = validate(draft)
    try:
        with session_scope() as s:
            if saved_queries.get_by_name(s, actor.user, d.name) is not None:
                raise _clash(d.name)
            return _view(saved_queries.insert(s, name=d.name, description=d.description, query_text=d.query_text,
                                              provider=d.provider or None, created_by=actor.user))
    except sa.exc.IntegrityError:  # a concurrent save with the same name won the race
        raise _clash(d.name) from None


def update(actor: Identity, query_id: int, draft: QueryDraft) -> SavedQueryView:
    """Change a query in place (its owner only); its schedules run the new text from then on."""
    identity.require_editor(actor, "change queries")
    d = validate(draft)
    try:
        with session_scope() as s:
            row = _require(s, query_id)
            _require_owner(actor, row, "change")
            other = saved_queries.get_by_name(s, row.created_by, d.name)
            if other is not None and other.id != row.id:
                raise _clash(d.name)
            return _view(saved_queries.update(s, row, name=d.name, description=d.description,
                                              query_text=d.query_text, provider=d.provider or None))
    except sa.exc.IntegrityError:
        raise _clash(d.name) from None


def duplicate(actor: Identity, query_id: int) -> SavedQueryView:
    """Copy any query into `actor`'s library as "<name> (copy)" (or "(copy 2)", … when taken)."""
    identity.require_editor(actor, "duplicate queries")
    try:
        with session_scope() as s:
            row = _require(s, query_id)
            base = f"{row.name[: MAX_NAME - 12]} (copy"
            taken = saved_queries.names_like(s, actor.user, base)
            name = next(n for n in (f"{base})" if i == 1 else f"{base} {i})" for i in range(1, 10_000))
                        if n not in taken)
            return _view(saved_queries.insert(s, name=name, description=row.description,
                                              query_text=row.query_text, provider=row.provider,
                                              created_by=actor.user))
    except sa.exc.IntegrityError:
        raise UserFacingError("Another copy was saved at the same moment: duplicate again.",
                              ErrorKind.CONFLICT) from None


def delete(actor: Identity, query_id: int) -> None:
    """Delete a query (its owner only); refused while schedules run it."""
    identity.require_editor(actor, "delete queries")
    with session_scope() as s:
        row = _require(s, query_id)
        _require_owner(actor, row, "delete")
        used = saved_queries.schedule_count(s, query_id)
        if used:
            raise UserFacingError(
                f"'{row.name}' is run by {used} schedule{'s' if used != 1 else ''}: delete "
                f"{'them' if used != 1 else 'it'} on the Schedules page first.", ErrorKind.CONFLICT)
        saved_queries.delete(s, row)
