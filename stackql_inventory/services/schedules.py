"""Schedules: saved queries run on a cron into inventory tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stackql_inventory.db import schedules as db_schedules
from stackql_inventory.db.engine import session_scope


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as the list shows it."""

    id: int
    query_id: int
    query_name: str
    cron_expression: str
    timezone: str
    target: str
    write_mode: str
    is_active: bool
    last_run_at: datetime | None
    last_run_status: str
    job_id: str


def list_schedules() -> list[ScheduleView]:
    """Every schedule with its query name."""
    with session_scope() as s:
        return [
            ScheduleView(
                id=sch.id or 0, query_id=sch.query_id, query_name=q.name,
                cron_expression=sch.cron_expression, timezone=sch.timezone,
                target=f"{sch.target_schema}.{sch.target_table}", write_mode=sch.write_mode,
                is_active=sch.is_active, last_run_at=sch.last_run_at,
                last_run_status=sch.last_run_status or "", job_id=sch.job_id or "",
            )
            for sch, q in db_schedules.list_with_queries(s)
        ]
