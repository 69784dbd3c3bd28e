"""Runs ledger view: the latest runs across all schedules, filterable by status."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.db.models import RUN_STATUSES
from stackql_inventory.services import inventory
from stackql_inventory.services.errors import UserFacingError

STATUS_COLORS = {"success": "green", "failed": "red", "running": "blue", "queued": "gray", "skipped": "gray",
                 "cancelled": "amber"}


class RunsState(rx.State):
    """The ledger rows shown and the status filter."""

    # "all" or one run status.
    status: str = "all"
    # One dict per run, newest first.
    runs: list[dict[str, str]] = []
    # True while the ledger loads.
    loading: bool = False
    # Why the ledger could not be loaded ('' when fine).
    error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Load the newest runs (of the chosen status)."""
        async with self:
            self.loading, self.error = True, ""
            status = None if self.status == "all" else self.status
        try:
            runs = await rx.run_in_thread(lambda: inventory.latest_runs(status))
        except UserFacingError as e:
            async with self:
                self.loading, self.error = False, e.message
            return
        async with self:
            self.runs = [
                {"id": str(r.id), "target": r.target, "query": r.query_name or "—", "trigger": r.trigger,
                 "status": r.status, "color": STATUS_COLORS.get(r.status, "gray"),
                 "started": formatting.timestamp(r.started_at), "rows": formatting.count(r.rows_written) or "—",
                 "duration": formatting.duration(r.duration_s) or "—", "error": r.error_message,
                 "by": r.created_by}
                for r in runs
            ]
            self.loading = False

    @rx.event
    def set_status(self, value: str):
        """Show only runs with this status ("all" for every run)."""
        if value == "all" or value in RUN_STATUSES:
            self.status = value
            return RunsState.load


def _row(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(r["id"]),
        rx.table.cell(r["started"], white_space="nowrap"),
        rx.table.cell(rx.code(r["target"], variant="ghost")),
        rx.table.cell(r["query"]),
        rx.table.cell(r["trigger"]),
        rx.table.cell(rx.badge(r["status"], color_scheme=r["color"], variant="soft",
                               custom_attrs={"data-testid": "inventory-run-status"})),
        rx.table.cell(r["rows"]),
        rx.table.cell(r["duration"], white_space="nowrap"),
        rx.table.cell(rx.text(r["error"], size="1", color_scheme="red", max_width="24rem", truncate=True,
                              title=r["error"])),
        custom_attrs={"data-testid": "inventory-run-row"},
    )


def runs_panel() -> rx.Component:
    headers = ("Run", "Started", "Target", "Query", "Trigger", "Status", "Rows", "Duration", "Error")
    return rx.vstack(
        rx.hstack(
            rx.text("Status", size="2"),
            rx.select(["all", *RUN_STATUSES], value=RunsState.status, on_change=RunsState.set_status, size="1",
                      custom_attrs={"data-testid": "inventory-runs-status"}),
            rx.button(rx.icon("refresh-cw", size=12), "Reload", size="1", variant="soft", on_click=RunsState.load,
                      loading=RunsState.loading),
            align="center",
            spacing="2",
        ),
        rx.cond(RunsState.error != "", rx.text(RunsState.error, color_scheme="red", size="2")),
        rx.cond(
            RunsState.runs.length() > 0,
            rx.scroll_area(
                rx.table.root(
                    rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
                    rx.table.body(rx.foreach(RunsState.runs, _row)),
                    size="1", width="100%",
                ),
                max_height="32rem", type="auto", scrollbars="vertical",
            ),
            rx.text(rx.cond(RunsState.loading, "Loading runs…", "No runs with this status."), size="2",
                    color_scheme="gray"),
        ),
        rx.text(f"The newest {inventory.LEDGER_LIMIT} runs.", size="1", color_scheme="gray"),
        width="100%",
        spacing="3",
        custom_attrs={"data-testid": "inventory-runs"},
    )
