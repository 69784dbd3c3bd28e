"""Materialized views tab: list with definitions, create from a validated SELECT, refresh, add a unique index."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import error_text
from stackql_inventory.services import inventory_matviews
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import AppState, current_identity

EXAMPLE = ("SELECT region, count(*) AS instances\nFROM aws_ec2_instances\nGROUP BY region")


class MatviewsState(rx.State):
    """Materialized views of stackql_inventory and the create form."""

    # One dict per view.
    views: list[dict[str, str]] = []
    # True while the list loads.
    loading: bool = False
    # Why the list or the last action failed ('' when fine).
    error: str = ""
    # Name of the view being refreshed or indexed ('' when none) and the last outcome message.
    busy: str = ""
    # What the last refresh / create / index did.
    message: str = ""
    # Create form: the new view's name.
    new_name: str = ""
    # Create form: the SELECT that defines it.
    new_sql: str = ""
    # True while the view is created and populated.
    creating: bool = False
    # Why the SELECT or name was refused ('' when fine).
    create_error: str = ""
    # Unique-index columns typed per view (view name -> "col1, col2").
    index_columns: dict[str, str] = {}

    @rx.event(background=True)
    async def load(self):
        """Load the materialized views."""
        async with self:
            self.loading, self.error = True, ""
        try:
            views = await rx.run_in_thread(inventory_matviews.list_matviews)
        except UserFacingError as e:
            async with self:
                self.loading, self.error = False, e.message
            return
        async with self:
            self.views = [
                {"name": v.name, "definition": v.definition, "rows": v.rows.text(),
                 "size": formatting.size(v.size_bytes),
                 "refreshed": (formatting.timestamp(v.last_refresh_at) + (f" by {v.last_refresh_by}"
                                                                           if v.last_refresh_by else ""))
                 or "unknown", "duration": formatting.duration(v.last_refresh_s),
                 "unique": v.unique_columns, "concurrently": "1" if v.can_refresh_concurrently else "",
                 "populated": "1" if v.populated else "", "columns": ", ".join(v.columns)}
                for v in views
            ]
            self.loading = False

    @rx.event
    def set_new_name(self, value: str):
        self.new_name = value

    @rx.event
    def set_new_sql(self, value: str):
        self.new_sql = value

    @rx.event
    def set_index_columns(self, view: str, value: str):
        self.index_columns = {**self.index_columns, view: value}

    @rx.event(background=True)
    async def create(self):
        """Create and populate a view from the SELECT (validated: read-only, stackql_inventory objects only)."""
        async with self:
            if self.creating:
                return
            name, text, who = self.new_name, self.new_sql, current_identity(self)
            self.creating, self.create_error, self.message = True, "", f"Creating {name}…"
        try:
            view = await rx.run_in_thread(lambda: inventory_matviews.create_matview(name, text, who))
        except UserFacingError as e:
            async with self:
                self.creating, self.create_error, self.message = False, e.message, ""
            return
        async with self:
            self.creating, self.new_name, self.new_sql = False, "", ""
            self.message = f"Created {view.name} ({view.rows.text()} rows)."
        yield MatviewsState.load
        yield _reload_catalogue()

    @rx.event(background=True)
    async def refresh(self, name: str):
        """REFRESH the view (CONCURRENTLY when it has a unique index)."""
        async with self:
            if self.busy:
                return
            self.busy, self.error, self.message, who = name, "", f"Refreshing {name}…", current_identity(self)
        try:
            result = await rx.run_in_thread(lambda: inventory_matviews.refresh_matview(name, who))
        except UserFacingError as e:
            async with self:
                self.busy, self.error, self.message = "", e.message, ""
            return
        async with self:
            self.busy = ""
            how = "concurrently" if result.concurrently else "(readers waited: no unique index)"
            rows = formatting.count(result.rows) if result.rows is not None else "?"
            self.message = f"Refreshed {name} {how} in {formatting.duration(result.duration_s)}: {rows} rows."
        yield MatviewsState.load
        yield _reload_catalogue()

    @rx.event(background=True)
    async def add_unique_index(self, name: str):
        """Add a unique index on the typed columns so the view can refresh concurrently."""
        async with self:
            if self.busy:
                return
            cols = [c.strip() for c in self.index_columns.get(name, "").split(",")]
            self.busy, self.error, self.message, who = name, "", f"Indexing {name}…", current_identity(self)
        try:
            await rx.run_in_thread(lambda: inventory_matviews.create_unique_index(name, cols, who))
        except UserFacingError as e:
            async with self:
                self.busy, self.error, self.message = "", e.message, ""
            return
        async with self:
            self.busy, self.message = "", f"{name} now refreshes concurrently."
        yield MatviewsState.load


def _reload_catalogue():
    # Imported here: the page module imports this one.
    from stackql_inventory.pages.inventory import InventoryState

    return InventoryState.load


def _view_card(v: rx.Var[dict[str, str]]) -> rx.Component:
    busy = MatviewsState.busy == v["name"]
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.code(v["name"], size="3", variant="ghost"),
                rx.cond(v["populated"] == "", rx.badge("not populated", color_scheme="amber")),
                rx.text(v["rows"], " rows · ", v["size"], size="2", color_scheme="gray"),
                rx.spacer(),
                rx.tooltip(
                    rx.button(rx.icon("refresh-cw", size=14), rx.cond(busy, "Refreshing…", "Refresh"),
                              size="1", on_click=MatviewsState.refresh(v["name"]), loading=busy,
                              disabled=(MatviewsState.busy != "") | ~AppState.can_edit,
                              custom_attrs={"data-testid": "inventory-refresh-mv"}),
                    content=rx.cond(v["concurrently"] != "", "REFRESH … CONCURRENTLY: readers keep the old rows",
                                    "Plain REFRESH: add a unique index to refresh concurrently"),
                ),
                width="100%", align="center",
            ),
            rx.text("Last refresh: ", v["refreshed"], rx.cond(v["duration"] != "", " (" + v["duration"] + ")", ""),
                    size="1", color_scheme="gray", custom_attrs={"data-testid": "inventory-mv-refreshed"}),
            rx.el.pre(v["definition"], style={"font_size": "12px", "white_space": "pre-wrap", "margin": 0,
                                              "padding": "0.5rem", "background": rx.color("gray", 2),
                                              "border_radius": "6px", "width": "100%"}),
            rx.cond(
                v["unique"] != "",
                rx.text("Unique key: ", rx.code(v["unique"]), " — refreshes concurrently.", size="1"),
                rx.hstack(
                    rx.input(placeholder=v["columns"], size="1", width="18rem",
                             on_change=lambda value: MatviewsState.set_index_columns(v["name"], value),
                             custom_attrs={"data-testid": "inventory-mv-index-columns"}),
                    rx.button("Add unique index", size="1", variant="soft",
                              on_click=MatviewsState.add_unique_index(v["name"]),
                              disabled=(MatviewsState.busy != "") | ~AppState.can_edit,
                              custom_attrs={"data-testid": "inventory-mv-index-create"}),
                    rx.text("to refresh without blocking readers", size="1", color_scheme="gray"),
                    align="center", spacing="2",
                ),
            ),
            width="100%",
            spacing="2",
        ),
        width="100%",
        custom_attrs={"data-testid": "inventory-mv-row", "data-name": v["name"]},
    )


def _create_form() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("New materialized view", size="3"),
            rx.text("A read-only SELECT over stackql_inventory tables and materialized views. Unqualified names are looked up in "
                    "stackql_inventory; other schemas, writes and functions with side effects are refused.",
                    size="1", color_scheme="gray"),
            rx.input(placeholder="view_name", value=MatviewsState.new_name, on_change=MatviewsState.set_new_name,
                     width="20rem", custom_attrs={"data-testid": "inventory-mv-name"}),
            rx.text_area(placeholder=EXAMPLE, value=MatviewsState.new_sql, on_change=MatviewsState.set_new_sql,
                         rows="6", width="100%", font_family="var(--code-font-family)",
                         custom_attrs={"data-testid": "inventory-mv-sql"}),
            error_text(MatviewsState.create_error, "inventory-mv-error", size="1"),
            rx.hstack(
                rx.button("Create and populate", on_click=MatviewsState.create, loading=MatviewsState.creating,
                          disabled=~AppState.can_edit, custom_attrs={"data-testid": "inventory-mv-create"}),
                rx.cond(~AppState.can_edit, rx.text("Read-only access: ask an editor to create views.", size="1",
                                                    color_scheme="gray")),
                align="center", spacing="2",
            ),
            width="100%",
            spacing="2",
        ),
        width="100%",
    )


def matviews_panel() -> rx.Component:
    return rx.vstack(
        error_text(MatviewsState.error, "inventory-mv-action-error", size="1"),
        rx.cond(MatviewsState.message != "",
                rx.text(MatviewsState.message, size="2", custom_attrs={"data-testid": "inventory-mv-status"})),
        rx.cond(
            MatviewsState.views.length() > 0,
            rx.vstack(rx.foreach(MatviewsState.views, _view_card), width="100%", spacing="3"),
            rx.text(rx.cond(MatviewsState.loading, "Loading materialized views…", "No materialized views yet."),
                    size="2", color_scheme="gray"),
        ),
        _create_form(),
        width="100%",
        spacing="3",
        custom_attrs={"data-testid": "inventory-matviews"},
    )
