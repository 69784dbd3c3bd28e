"""Inventory charts (recharts): rows collected per run of the selected table, resources per provider."""

from __future__ import annotations

from typing import Any

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.services import inventory
from stackql_inventory.services.errors import UserFacingError


class ChartsState(rx.State):
    """The per-table run series."""

    # The table charted ('' when none).
    table: str = ""
    # One point per successful run: {"run", "at", "rows"}.
    run_points: list[dict[str, Any]] = []
    # True while the series loads.
    loading: bool = False
    # Why the series could not be loaded ('' when fine).
    error: str = ""

    @rx.event(background=True)
    async def load_runs(self, name: str):
        """Rows each successful run collected into `name` (from the run ledger)."""
        async with self:
            self.table, self.loading, self.error = name, True, ""
        try:
            points = await rx.run_in_thread(lambda: inventory.rows_per_run(name))
        except UserFacingError as e:
            async with self:
                self.loading, self.error = False, e.message
            return
        async with self:
            if self.table != name:
                return
            self.run_points = [
                {"run": f"#{p.run_id}", "at": formatting.timestamp(p.finished_at, fmt="%m-%d %H:%M"),
                 "rows": p.rows if p.rows is not None else 0}
                for p in points
            ]
            self.loading = False


def runs_chart() -> rx.Component:
    return rx.vstack(
        rx.cond(ChartsState.error != "", rx.text(ChartsState.error, color_scheme="red", size="2")),
        rx.cond(
            ChartsState.run_points.length() > 0,
            rx.recharts.line_chart(
                rx.recharts.cartesian_grid(stroke_dasharray="3 3"),
                rx.recharts.line(data_key="rows", stroke=rx.color("indigo", 9), type_="monotone", name="rows"),
                rx.recharts.x_axis(data_key="at"),
                rx.recharts.y_axis(),
                rx.recharts.graphing_tooltip(),
                data=ChartsState.run_points,
                width="100%",
                height=260,
            ),
            rx.text("No successful runs recorded for this table yet.", size="2", color_scheme="gray"),
        ),
        rx.text("Rows each successful run collected (the run ledger's figure); times in UTC.", size="1",
                color_scheme="gray"),
        width="100%",
        custom_attrs={"data-testid": "inventory-chart-runs"},
    )


def providers_chart(points: rx.Var) -> rx.Component:
    """Bar chart of resources per provider; `points` is a list of {"provider", "resources"}."""
    return rx.vstack(
        rx.heading("Resources per provider", size="3"),
        rx.cond(
            points.length() > 0,
            rx.recharts.bar_chart(
                rx.recharts.cartesian_grid(stroke_dasharray="3 3"),
                rx.recharts.bar(data_key="resources", fill=rx.color("indigo", 8), name="resources"),
                rx.recharts.x_axis(data_key="provider"),
                rx.recharts.y_axis(),
                rx.recharts.graphing_tooltip(),
                data=points,
                width="100%",
                height=300,
            ),
            rx.text("No inventory tables yet.", size="2", color_scheme="gray"),
        ),
        rx.text("Resources a table's last successful run collected (its row count when the ledger has none), summed "
                "by the provider of its saved query. Materialized views are not counted.", size="1",
                color_scheme="gray"),
        width="100%",
        custom_attrs={"data-testid": "inventory-chart-providers"},
    )

