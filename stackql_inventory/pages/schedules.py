"""Schedules page: saved queries run on a cron into inventory tables."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.services import schedules
from stackql_inventory.services.errors import ErrorKind, UserFacingError


class SchedulesState(rx.State):
    """The schedule list."""

    # One dict per schedule, as the table shows it.
    rows: list[dict[str, str]] = []
    # Why the list could not be loaded ('' when fine).
    load_error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Load every schedule."""
        try:
            items = await rx.run_in_thread(schedules.list_schedules)
        except UserFacingError as e:
            async with self:
                self.load_error = "" if e.kind is ErrorKind.DATABASE else e.message
            return
        async with self:
            self.load_error = ""
            self.rows = [
                {
                    "id": str(s.id), "query": s.query_name, "cron": s.cron_expression, "timezone": s.timezone,
                    "target": s.target, "mode": s.write_mode, "active": "active" if s.is_active else "paused",
                    "last_run": formatting.timestamp(s.last_run_at), "status": s.last_run_status or "never run",
                }
                for s in items
            ]


def _row(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(r["query"]),
        rx.table.cell(rx.code(r["cron"])),
        rx.table.cell(r["target"]),
        rx.table.cell(r["mode"]),
        rx.table.cell(r["active"]),
        rx.table.cell(r["last_run"]),
        rx.table.cell(rx.text(r["status"], custom_attrs={"data-testid": "schedule-status"})),
        custom_attrs={"data-testid": "schedule-row"},
    )


def page() -> rx.Component:
    return page_frame(
        "schedules",
        "Schedules",
        error_text(SchedulesState.load_error),
        rx.cond(
            SchedulesState.rows.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(*[rx.table.column_header_cell(h) for h in
                                   ("Query", "Cron", "Target", "Mode", "State", "Last run", "Status")])
                ),
                rx.table.body(rx.foreach(SchedulesState.rows, _row)),
                width="100%",
            ),
            empty_state("calendar-clock", "No schedules yet",
                        "Save a query in the IDE, then schedule it to fill an inventory table.", "schedules-empty"),
        ),
    )
