"""SQL for schedules (`stackql_app.schedules`)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from stackql_inventory.db.models import SavedQuery, Schedule


def list_with_queries(session: Session) -> list[tuple[Schedule, SavedQuery]]:
    """Every schedule with its saved query, by target table."""
    stmt = (
        select(Schedule, SavedQuery)
        .join(SavedQuery, col(SavedQuery.id) == Schedule.query_id)
        .order_by(col(Schedule.target_table))
    )
    return [(s, q) for s, q in session.exec(stmt)]


def get(session: Session, schedule_id: int) -> Schedule | None:
    return session.get(Schedule, schedule_id)
