"""Inventory page: a catalogue of the tables the schedules collected, with freshness, previews, changes and charts."""

from __future__ import annotations

from datetime import UTC, datetime

import reflex as rx

from stackql_inventory import formatting, routes
from stackql_inventory.components import inventory_export
from stackql_inventory.components.inventory_changes import ChangesState, changes_panel
from stackql_inventory.components.inventory_charts import ChartsState, providers_chart, runs_chart
from stackql_inventory.components.inventory_matviews import MatviewsState, matviews_panel
from stackql_inventory.components.inventory_preview import PreviewState, preview_panel
from stackql_inventory.components.inventory_runs import RunsState, runs_panel
from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.services import inventory
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.services.inventory import InventoryTable
from stackql_inventory.services.inventory_freshness import Freshness
from stackql_inventory.state.app_state import list_error

FRESHNESS_COLORS = {
    Freshness.FRESH: "green", Freshness.STALE: "amber", Freshness.EXPIRED: "red", Freshness.FAILING: "red",
    Freshness.MANUAL: "gray", Freshness.PENDING: "blue", Freshness.PAUSED: "gray", Freshness.UNKNOWN: "gray",
}
SORT_LABELS = {"name": "Name", "rows": "Rows", "size": "Size", "refreshed": "Last refresh", "freshness": "Freshness"}

register_routes = inventory_export.register


def _row(t: InventoryTable, *, detail: bool = False) -> dict[str, str]:
    row = {
        "name": t.name,
        "kind": "view" if t.kind == "materialized view" else "table",
        "rows": t.rows.text(),
        "size": formatting.size(t.size_bytes),
        "refreshed": formatting.timestamp(t.last_success_at) or "never",
        "freshness": t.freshness.state.value,
        "freshness_reason": t.freshness.reason,
        "freshness_color": FRESHNESS_COLORS.get(t.freshness.state, "gray"),
        "query": t.query_name,
        "query_href": f"{routes.IDE}?query={t.query_id}" if t.query_id else "",
        "schedule": t.cron_expression,
        "schedule_href": f"{routes.SCHEDULES}?schedule={t.schedule_id}" if t.schedule_id else "",
        "mode": t.write_mode or ("—" if t.kind == "table" else "view"),
        "running": "1" if t.running else "",
    }
    if detail:  # only the selected table's panel shows these
        row["comment"] = inventory.comment_for_display(t.comment, datetime.now(UTC))
    return row


class InventoryState(rx.State):
    """The catalogue of inventory tables, its summary figures, search/sort and the selected table."""

    # Rows of the table list after search and sort, as the list shows them.
    tables: list[dict[str, str]] = []
    # Summary figures (metric label -> value) for the strip at the top.
    metrics: dict[str, str] = {}
    # Search text over table, query and provider names.
    search: str = ""
    # Sort key (see SORT_LABELS).
    sort: str = "name"
    # Sort descending.
    descending: bool = False
    # The table whose preview / changes / chart are shown ('' when none).
    selected: str = ""
    # The selected table's row (name, mode, comment …).
    selected_row: dict[str, str] = {}
    # True while the catalogue loads.
    loading: bool = False
    # What is loading (shown beside the spinner).
    status: str = ""
    # Why the list could not be loaded ('' when fine).
    load_error: str = ""
    # Why some figures are estimates right now ('' normally).
    note: str = ""
    # Server time of the last load (shown under the list).
    load_ms: str = ""
    # Which tab is open: tables | views | runs | charts.
    tab: str = "tables"
    # Number of tables before search.
    total: int = 0
    # Resources per provider across all tables (the bar chart's data).
    provider_points: list[dict[str, str | int]] = []
    # The full catalogue from the last load (backend only).
    _all: list[InventoryTable] = []

    @rx.event(background=True)
    async def load(self):
        """Load the catalogue (counts, freshness, schedules, last runs) off the event loop."""
        async with self:
            if self.loading:
                return
            self.loading, self.status = True, "Loading inventory tables…"
        started = datetime.now(UTC)
        try:
            cat = await rx.run_in_thread(inventory.catalogue)
        except UserFacingError as e:
            problem = await list_error(self, e)
            async with self:
                self.loading, self.status = False, ""
                self.load_error = problem
            return
        async with self:
            self._all = cat.tables
            self.total = len(cat.tables)
            m = cat.metrics
            self.metrics = {
                "Tables": formatting.count(m.tables), "Total rows": m.total_rows_text(),
                "Refreshed in 24 h": formatting.count(m.refreshed_24h), "Stale": formatting.count(m.stale),
                "Failed last runs": formatting.count(m.failing),
            }
            self.note, self.load_error = cat.note, ""
            self.load_ms = formatting.duration((datetime.now(UTC) - started).total_seconds())
            self._apply()
            self.provider_points = [{"provider": p, "resources": n}
                                    for p, n in inventory.resources_per_provider(cat.tables)]
            self.loading, self.status = False, ""

    def _apply(self) -> None:
        shown = inventory.search_and_sort(self._all, self.search, self.sort, self.descending)
        self.tables = [_row(t) for t in shown]
        if self.selected:
            match = [_row(t, detail=True) for t in self._all if t.name == self.selected]
            self.selected_row = match[0] if match else {}

    @rx.event
    def set_search(self, value: str):
        """Filter the list by name, query or provider."""
        self.search = value
        self._apply()

    @rx.event
    def set_sort(self, value: str):
        """Sort the list by another column."""
        if value in SORT_LABELS:
            self.sort = value
            self._apply()

    @rx.event
    def toggle_direction(self):
        """Flip ascending / descending."""
        self.descending = not self.descending
        self._apply()

    @rx.event
    def set_tab(self, value: str):
        """Open another tab."""
        self.tab = value
        if value == "views":
            return MatviewsState.load
        if value == "runs":
            return RunsState.load

    @rx.event
    def select_table(self, name: str):
        """Show the preview, changes and chart of `name`."""
        rows = [_row(t, detail=True) for t in self._all if t.name == name]
        if not rows:
            return
        self.selected, self.selected_row = name, rows[0]
        return [PreviewState.open_table(name), ChangesState.open_table(name), ChartsState.load_runs(name)]

    @rx.event
    def clear_selection(self):
        self.selected, self.selected_row = "", {}

    @rx.var
    def has_tables(self) -> bool:
        return self.total > 0

    @rx.var
    def count_text(self) -> str:
        """`3 of 12 tables`, `1 table`."""
        shown = len(self.tables)
        noun = "table" if self.total == 1 else "tables"
        if shown != self.total:
            return f"{formatting.count(shown)} of {formatting.count(self.total)} {noun}"
        return f"{formatting.count(self.total)} {noun}"


# ------------------------------------------------------------------ components

def _metric(label: str) -> rx.Component:
    return rx.card(
        rx.text(label, size="1", color_scheme="gray"),
        rx.heading(InventoryState.metrics.get(label, "–"), size="5"),
        min_width="9rem",
        custom_attrs={"data-testid": f"inventory-metric-{label.lower().replace(' ', '-')}"},
    )


def metrics() -> rx.Component:
    return rx.hstack(
        *[_metric(label) for label in ("Tables", "Total rows", "Refreshed in 24 h", "Stale", "Failed last runs")],
        spacing="3",
        wrap="wrap",
        custom_attrs={"data-testid": "inventory-metrics"},
    )


def freshness_badge(row: rx.Var[dict[str, str]]) -> rx.Component:
    # A native title, not a Radix tooltip: 500 tooltip roots make the list noticeably slower to render.
    return rx.badge(row["freshness"], color_scheme=row["freshness_color"], variant="soft",
                    title=row["freshness_reason"], custom_attrs={"data-testid": "inventory-freshness"})


def _link_or_dash(text: rx.Var, href: rx.Var) -> rx.Component:
    return rx.cond(href != "", rx.el.a(text, href=href, class_name="inv-link"), rx.el.span("—", class_name="inv-dim"))


# The list is plain table elements (styled by _LIST_CSS) rather than Radix Table components: with 500
# tables that halves the time the browser needs to render it.
_LIST_CSS = {
    "width": "100%", "border_collapse": "collapse", "font_size": "var(--font-size-2)",
    "& th": {"text_align": "left", "font_weight": "600", "padding": "6px 10px", "position": "sticky", "top": "0",
             "background": rx.color("gray", 1), "border_bottom": f"1px solid {rx.color('gray', 6)}", "z_index": "1"},
    "& td": {"padding": "5px 10px", "border_bottom": f"1px solid {rx.color('gray', 4)}", "white_space": "nowrap"},
    "& tbody tr": {"cursor": "pointer"},
    "& tbody tr:hover": {"background": rx.color("gray", 3)},
    "& tr.inv-selected": {"background": rx.color("indigo", 3)},
    "& .inv-name": {"font_family": "var(--code-font-family)", "font_size": "var(--font-size-1)"},
    "& .inv-link": {"color": rx.color("indigo", 11), "text_decoration": "none"},
    "& .inv-link:hover": {"text_decoration": "underline"},
    "& .inv-dim": {"color": rx.color("gray", 9)},
    "& .inv-kind": {"margin_left": "6px", "font_size": "11px", "padding": "0 5px", "border_radius": "4px",
                    "border": f"1px solid {rx.color('gray', 7)}", "color": rx.color("gray", 11)},
}


def _table_row(row: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.el.tr(
        rx.el.td(
            rx.el.span(row["name"], class_name="inv-name"),
            rx.cond(row["kind"] == "view", rx.el.span("view", class_name="inv-kind")),
            rx.cond(row["running"] != "", rx.el.span(" ⟳", title="A run is writing this table", class_name="inv-dim")),
        ),
        rx.el.td(row["rows"]),
        rx.el.td(row["size"]),
        rx.el.td(row["refreshed"]),
        rx.el.td(freshness_badge(row)),
        rx.el.td(_link_or_dash(row["query"], row["query_href"])),
        rx.el.td(_link_or_dash(row["schedule"], row["schedule_href"])),
        rx.el.td(row["mode"]),
        on_click=InventoryState.select_table(row["name"]),
        class_name=rx.cond(row["name"] == InventoryState.selected, "inv-selected", ""),
        custom_attrs={"data-testid": "inventory-table-row", "data-name": row["name"]},
    )


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.input(
            rx.input.slot(rx.icon("search", size=14)),
            placeholder="Search tables, queries, providers…",
            value=InventoryState.search,
            on_change=InventoryState.set_search.debounce(250),
            width="20rem",
            custom_attrs={"data-testid": "inventory-search"},
        ),
        rx.select.root(
            rx.select.trigger(custom_attrs={"data-testid": "inventory-sort"}),
            rx.select.content(*[rx.select.item(f"Sort by {label.lower()}", value=key)
                                for key, label in SORT_LABELS.items()]),
            value=InventoryState.sort,
            on_change=InventoryState.set_sort,
        ),
        rx.icon_button(
            rx.cond(InventoryState.descending, rx.icon("arrow-down-wide-narrow"), rx.icon("arrow-up-narrow-wide")),
            variant="soft", on_click=InventoryState.toggle_direction,
            custom_attrs={"data-testid": "inventory-sort-direction"},
        ),
        rx.text(InventoryState.count_text, size="2", color_scheme="gray",
                custom_attrs={"data-testid": "inventory-count"}),
        rx.spacer(),
        rx.cond(InventoryState.loading,
                rx.hstack(rx.spinner(size="1"), rx.text(InventoryState.status, size="2"),
                          custom_attrs={"data-testid": "inventory-status"}, align="center")),
        width="100%",
        align="center",
        spacing="3",
    )


def table_list() -> rx.Component:
    headers = ("Table", "Rows", "Size", "Last refresh", "Freshness", "Source query", "Schedule", "Mode")
    return rx.vstack(
        _toolbar(),
        rx.cond(InventoryState.note != "", rx.callout(InventoryState.note, icon="info", size="1", width="100%")),
        rx.box(
            rx.el.table(
                rx.el.thead(rx.el.tr(*[rx.el.th(h) for h in headers])),
                rx.el.tbody(rx.foreach(InventoryState.tables, _table_row)),
                style=_LIST_CSS,
            ),
            max_height="26rem", overflow_y="auto", width="100%",
        ),
        rx.text("Loaded in ", InventoryState.load_ms, ". Rows marked ≈ are the planner's estimate; tables up to "
                f"{formatting.count(inventory.EXACT_COUNT_MAX)} rows are counted exactly.",
                size="1", color_scheme="gray"),
        width="100%",
        spacing="2",
    )


def selected_panel() -> rx.Component:
    return rx.cond(
        InventoryState.selected != "",
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.heading(InventoryState.selected, size="4", custom_attrs={"data-testid": "inventory-selected"}),
                    rx.badge(InventoryState.selected_row.get("mode", ""), variant="soft"),
                    rx.spacer(),
                    rx.icon_button(rx.icon("x"), variant="ghost", on_click=InventoryState.clear_selection),
                    width="100%", align="center",
                ),
                rx.cond(InventoryState.selected_row.get("comment", "") != "",
                        rx.text(InventoryState.selected_row.get("comment", ""), size="1", color_scheme="gray",
                                white_space="pre-line", custom_attrs={"data-testid": "inventory-comment"})),
                rx.tabs.root(
                    rx.tabs.list(
                        rx.tabs.trigger("Preview", value="preview", custom_attrs={"data-testid": "inventory-subtab-preview"}),
                        rx.tabs.trigger("Changes between runs", value="changes",
                                        custom_attrs={"data-testid": "inventory-subtab-changes"}),
                        rx.tabs.trigger("Rows per run", value="chart", custom_attrs={"data-testid": "inventory-subtab-chart"}),
                    ),
                    rx.tabs.content(preview_panel(), value="preview", padding_top="0.75rem"),
                    rx.tabs.content(changes_panel(), value="changes", padding_top="0.75rem"),
                    rx.tabs.content(runs_chart(), value="chart", padding_top="0.75rem"),
                    default_value="preview",
                    width="100%",
                ),
                width="100%",
                spacing="2",
            ),
            width="100%",
        ),
    )


def tables_tab() -> rx.Component:
    return rx.cond(
        InventoryState.has_tables,
        rx.vstack(table_list(), selected_panel(), width="100%", spacing="4"),
        rx.cond(
            InventoryState.loading,
            rx.hstack(rx.spinner(), rx.text(InventoryState.status), custom_attrs={"data-testid": "inventory-status"}),
            empty_state("database", "No inventory tables yet",
                        "Schedules write their results here after their first run.", "inventory-empty"),
        ),
    )


def page() -> rx.Component:
    return page_frame(
        "inventory",
        "Inventory",
        error_text(InventoryState.load_error),
        metrics(),
        rx.tabs.root(
            rx.tabs.list(
                rx.tabs.trigger("Tables", value="tables", custom_attrs={"data-testid": "inventory-tab-tables"}),
                rx.tabs.trigger("Materialized views", value="views", custom_attrs={"data-testid": "inventory-tab-views"}),
                rx.tabs.trigger("Runs", value="runs", custom_attrs={"data-testid": "inventory-tab-runs"}),
                rx.tabs.trigger("Charts", value="charts", custom_attrs={"data-testid": "inventory-tab-charts"}),
            ),
            rx.tabs.content(tables_tab(), value="tables", padding_top="1rem"),
            rx.tabs.content(matviews_panel(), value="views", padding_top="1rem"),
            rx.tabs.content(runs_panel(), value="runs", padding_top="1rem"),
            rx.tabs.content(providers_chart(InventoryState.provider_points), value="charts", padding_top="1rem"),
            value=InventoryState.tab,
            on_change=InventoryState.set_tab,
            width="100%",
        ),
        actions=rx.button(rx.icon("refresh-cw", size=14), "Reload", variant="soft", on_click=InventoryState.load,
                          loading=InventoryState.loading, custom_attrs={"data-testid": "inventory-reload"}),
    )
