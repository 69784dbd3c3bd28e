"""Inventory page: the tables the schedules have collected."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.services import inventory
from stackql_inventory.services.errors import ErrorKind, UserFacingError


class InventoryState(rx.State):
    """Inventory tables and summary figures."""

    # One dict per table or materialized view.
    tables: list[dict[str, str]] = []
    # Why the list could not be loaded ('' when fine).
    load_error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Load the inventory tables."""
        try:
            items = await rx.run_in_thread(inventory.list_tables)
        except UserFacingError as e:
            async with self:
                self.load_error = "" if e.kind is ErrorKind.DATABASE else e.message
            return
        async with self:
            self.load_error = ""
            self.tables = [
                {
                    "name": t.name, "kind": t.kind,
                    "rows": "≈" + formatting.count(max(t.estimated_rows, 0)),
                    "size": formatting.size(t.size_bytes),
                }
                for t in items
            ]

    @rx.var
    def table_count(self) -> int:
        """Number of inventory tables and views."""
        return len(self.tables)


def _row(t: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(t["name"])),
        rx.table.cell(t["kind"]),
        rx.table.cell(t["rows"]),
        rx.table.cell(t["size"]),
        custom_attrs={"data-testid": "inventory-table-row"},
    )


def metrics() -> rx.Component:
    return rx.hstack(
        rx.card(
            rx.text("Tables", size="1", color_scheme="gray"),
            rx.heading(InventoryState.table_count, size="6"),
        ),
        custom_attrs={"data-testid": "inventory-metrics"},
    )


def page() -> rx.Component:
    return page_frame(
        "inventory",
        "Inventory",
        error_text(InventoryState.load_error),
        metrics(),
        rx.cond(
            InventoryState.tables.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in
                                               ("Table", "Kind", "Rows", "Size")])),
                rx.table.body(rx.foreach(InventoryState.tables, _row)),
                width="100%",
            ),
            empty_state("database", "No inventory tables yet",
                        "Schedules write their results here after their first run.", "inventory-empty"),
        ),
    )
