"""Inventory preview: keyset-paged rows of the selected table, a column filter, readable JSON cells, CSV export."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import error_text
from stackql_inventory.services import inventory_preview as preview
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.services.inventory_preview import Filter, TableVersion

CELL_CHARS = 80
NULL = "\u2205"   # how SQL NULL is shown (an empty string stays empty)
FILTER_OPS = {"contains": "contains", "equals": "equals", "is_null": "is NULL", "not_null": "is not NULL"}


def _short(value: str | None) -> str:
    if value is None:
        return NULL
    one_line = " ".join(value.split())
    return one_line if len(one_line) <= CELL_CHARS else one_line[: CELL_CHARS - 1] + "…"


class PreviewState(rx.State):
    """One page of the selected table, the filter and the paging cursors."""

    # The previewed table ('' when none).
    table: str = ""
    # Names of the columns shown (bookkeeping columns only when `show_bookkeeping`).
    columns: list[str] = []
    # Every column's name (the filter offers them all).
    all_columns: list[str] = []
    # Show the runner's bookkeeping columns (_stackql_run_id, SCD2 validity, …).
    show_bookkeeping: bool = False
    # The table has the runner's SCD2 history layout.
    is_history: bool = False
    # History tables: show only current versions (no closed versions or tombstones).
    current_only: bool = True
    # Whether each shown column holds JSON (json/jsonb, or JSON text on this page): monospace, click to expand.
    json_columns: list[bool] = []
    # The page's cells, shortened for the grid (NULL shown as ∅).
    cells: list[list[str]] = []
    # 1-based page number.
    page_no: int = 1
    # There is a page after this one.
    has_next: bool = False
    # How rows are ordered (unique key or physical order).
    plan_text: str = ""
    # Server time of the page.
    elapsed: str = ""
    # Rows were rewritten / moved since page 1 ('' when not).
    warning: str = ""
    # Filter input: the column.
    filter_column: str = ""
    # Filter input: the operator (see FILTER_OPS).
    filter_op: str = "contains"
    # Filter input: the value (bound as a parameter).
    filter_value: str = ""
    # The filter in force, described ('' when none).
    active_filter: str = ""
    # True while a page loads.
    loading: bool = False
    # Why the page could not be loaded ('' when fine).
    error: str = ""
    # Detail dialog: the cell's column and type.
    detail_title: str = ""
    # Detail dialog: the full value (JSON indented).
    detail_text: str = ""
    # Detail dialog is open.
    detail_open: bool = False
    # Export progress message.
    export_status: str = ""
    # Full values of the page (backend only).
    _full: list[list[str | None]] = []
    # Every column's type (backend only).
    _types: list[str] = []
    # Indexes of the shown columns in the full rows (backend only).
    _shown: list[int] = []
    # The cursor that starts each page, page 1 first (None) (backend only).
    _cursors: list = []
    # The cursor after the current page (backend only).
    _next_cursor: tuple | str | None = None
    # The filter in force (backend only).
    _filter: Filter | None = None
    # Page 1's table version, to notice rewrites and moved rows (backend only).
    _version: TableVersion | None = None

    @rx.event(background=True)
    async def open_table(self, name: str):
        """Show page 1 of `name` (no filter)."""
        async with self:
            self.table, self.page_no, self.error, self.warning = name, 1, "", ""
            self.filter_column, self.filter_value, self.filter_op, self.active_filter = "", "", "contains", ""
            self._filter, self._cursors, self._version = None, [None], None
            self.cells, self.columns, self.all_columns, self._full, self._shown = [], [], [], [], []
        await self._load_page(None, first=True)

    async def _load_page(self, after, *, first: bool = False):
        async with self:
            if self.loading and not first:
                return
            self.loading, self.error = True, ""
            table, flt, since, current = self.table, self._filter, self._version, self.current_only
        if not table:
            async with self:
                self.loading = False
            return
        try:
            page = await rx.run_in_thread(lambda: preview.fetch_page(table, after=after, flt=flt, since=since,
                                                                     current_only=current))
        except UserFacingError as e:
            async with self:
                self.loading, self.error = False, e.message
            return
        async with self:
            if self.table != table:  # another table was selected meanwhile
                return
            self.all_columns = [c.name for c in page.columns]
            self.is_history = preview.is_history(page.columns)
            self._types = [c.type for c in page.columns]
            self._full = page.rows
            self._render()
            self.has_next, self._next_cursor = page.has_next, page.next_cursor
            if self._version is None:
                self._version = page.version
            self.plan_text = page.plan.describe()
            self.elapsed = formatting.duration(page.elapsed_ms / 1000)
            self.warning = page.warning
            self.loading = False

    def _render(self) -> None:
        """Fill the grid from the page's full values and the bookkeeping toggle."""
        self._shown = [i for i, c in enumerate(self.all_columns)
                       if self.show_bookkeeping or c not in preview.BOOKKEEPING_COLUMNS]
        self.columns = [self.all_columns[i] for i in self._shown]
        self.json_columns = [
            self._types[i] in ("json", "jsonb") or any(preview.pretty_json(r[i]) is not None for r in self._full)
            for i in self._shown
        ]
        self.cells = [[_short(row[i]) for i in self._shown] for row in self._full]

    @rx.event
    def toggle_bookkeeping(self, value: bool):
        """Show or hide the runner's bookkeeping columns."""
        self.show_bookkeeping = value
        self._render()

    @rx.event(background=True)
    async def toggle_current(self, value: bool):
        """History tables: current versions only, or every version (closed ones and tombstones too)."""
        async with self:
            self.current_only = value
            self.page_no, self._cursors, self._version = 1, [None], None
        await self._load_page(None)

    @rx.event(background=True)
    async def next_page(self):
        """The page after this one (keyset: resumes after the last row shown)."""
        async with self:
            if self.loading or not self.has_next:
                return
            after = self._next_cursor
            self._cursors = [*self._cursors[: self.page_no], after]
            self.page_no += 1
        await self._load_page(after)

    @rx.event(background=True)
    async def previous_page(self):
        """The page before this one (its starting cursor was kept)."""
        async with self:
            if self.loading or self.page_no <= 1:
                return
            self.page_no -= 1
            after = self._cursors[self.page_no - 1]
        await self._load_page(after)

    @rx.event(background=True)
    async def first_page(self):
        """Back to page 1 (also clears a 'rows moved' warning)."""
        async with self:
            self.page_no, self._cursors, self._version = 1, [None], None
        await self._load_page(None)

    @rx.event
    def set_filter_column(self, value: str):
        self.filter_column = value

    @rx.event
    def set_filter_op(self, value: str):
        if value in FILTER_OPS:
            self.filter_op = value

    @rx.event
    def set_filter_value(self, value: str):
        self.filter_value = value

    @rx.event(background=True)
    async def apply_filter(self):
        """Filter rows by the chosen column (the value is a bound parameter; the column must exist)."""
        async with self:
            if not self.filter_column:
                self.error = "Pick a column to filter on."
                return
            self._filter = Filter(self.filter_column, self.filter_op, self.filter_value)
            self.active_filter = preview.describe_filter(self._filter)
            self.page_no, self._cursors, self._version = 1, [None], None
        await self._load_page(None)

    @rx.event(background=True)
    async def clear_filter(self):
        async with self:
            self._filter, self.active_filter, self.filter_value = None, "", ""
            self.page_no, self._cursors, self._version = 1, [None], None
        await self._load_page(None)

    @rx.event
    def show_cell(self, row: int, col: int):
        """Open the full value of one cell (JSON indented)."""
        if not (0 <= row < len(self._full) and 0 <= col < len(self._shown)):
            return
        index = self._shown[col]
        value, kind = self._full[row][index], self._types[index]
        self.detail_title = f"{self.all_columns[index]} ({kind})"
        self.detail_text = "NULL" if value is None else (preview.pretty_json(value, kind) or value)
        self.detail_open = True

    @rx.event
    def set_detail_open(self, value: bool):
        self.detail_open = value

    @rx.event(background=True)
    async def export_csv(self):
        """Download the table (with the filter in force) as CSV, streamed from PostgreSQL by COPY."""
        async with self:
            table, flt, current = self.table, self._filter, self.current_only
            self.export_status = "Preparing the export…"
        try:
            ticket = await rx.run_in_thread(lambda: preview.prepare_export(table, flt, current_only=current))
        except UserFacingError as e:
            async with self:
                self.error, self.export_status = e.message, ""
            return
        async with self:
            self.export_status = f"Downloading {ticket.filename}…"
        yield _download(ticket.url, ticket.filename)

    @rx.var
    def has_previous(self) -> bool:
        return self.page_no > 1

    @rx.var
    def page_text(self) -> str:
        if not self.cells:
            return "No rows" + (" match the filter" if self.active_filter else "")
        first = (self.page_no - 1) * preview.PAGE_SIZE + 1
        return (f"Page {self.page_no} · rows {formatting.count(first)}–"
                f"{formatting.count(first + len(self.cells) - 1)}")


def _download(path: str, filename: str) -> rx.event.EventSpec:
    """Download `path` from the backend. Production serves UI and API on one origin, so a relative URL works
    behind any proxy; `reflex run` in development serves the API on its own port."""
    from reflex.utils.exec import is_prod_mode

    if is_prod_mode():
        return rx.download(url=path, filename=filename)
    return rx.download(url=rx.Var.create(rx.config.get_config().api_url.rstrip("/") + path), filename=filename)


def _cell(row_index: rx.Var[int], value: rx.Var[str], col_index: rx.Var[int]) -> rx.Component:
    is_json = PreviewState.json_columns[col_index]
    return rx.table.cell(
        rx.cond(
            value == NULL,
            rx.text("NULL", color_scheme="gray", size="1", style={"font_style": "italic"}),
            rx.text(value, size="1", font_family=rx.cond(is_json, "var(--code-font-family)", "inherit"),
                    color=rx.cond(is_json, rx.color("indigo", 11), "inherit")),
        ),
        on_click=PreviewState.show_cell(row_index, col_index),
        cursor="pointer",
        white_space="nowrap",
        custom_attrs={"data-testid": "inventory-cell"},
    )


def _grid() -> rx.Component:
    return rx.scroll_area(
        rx.table.root(
            rx.table.header(rx.table.row(rx.foreach(
                PreviewState.columns,
                lambda c, i: rx.table.column_header_cell(
                    rx.hstack(rx.text(c), rx.cond(PreviewState.json_columns[i], rx.badge("{ }", size="1")),
                              spacing="1", align="center"),
                    white_space="nowrap"),
            ))),
            rx.table.body(rx.foreach(
                PreviewState.cells,
                lambda row, r: rx.table.row(
                    rx.foreach(row, lambda value, c: _cell(r, value, c)),
                    custom_attrs={"data-testid": "inventory-preview-row"},
                ),
            )),
            size="1",
            width="100%",
        ),
        max_height="28rem",
        type="auto",
        scrollbars="both",
    )


def _filter_bar() -> rx.Component:
    return rx.hstack(
        rx.select(
            PreviewState.all_columns, placeholder="Column", value=PreviewState.filter_column,
            on_change=PreviewState.set_filter_column, size="1",
            custom_attrs={"data-testid": "inventory-filter-column"},
        ),
        rx.select.root(
            rx.select.trigger(custom_attrs={"data-testid": "inventory-filter-op"}),
            rx.select.content(*[rx.select.item(label, value=op) for op, label in FILTER_OPS.items()]),
            value=PreviewState.filter_op, on_change=PreviewState.set_filter_op, size="1",
        ),
        rx.input(
            placeholder="value", value=PreviewState.filter_value, on_change=PreviewState.set_filter_value,
            on_blur=PreviewState.set_filter_value, size="1", width="14rem",
            custom_attrs={"data-testid": "inventory-filter-value"},
        ),
        rx.button("Filter", size="1", on_click=PreviewState.apply_filter,
                  custom_attrs={"data-testid": "inventory-filter-apply"}),
        rx.cond(PreviewState.active_filter != "",
                rx.button(rx.icon("x", size=12), PreviewState.active_filter, size="1", variant="soft",
                          on_click=PreviewState.clear_filter, custom_attrs={"data-testid": "inventory-filter-clear"})),
        rx.spacer(),
        rx.cond(PreviewState.is_history, rx.hstack(
            rx.text("Current versions only", size="1", color_scheme="gray"),
            rx.switch(checked=PreviewState.current_only, on_change=PreviewState.toggle_current, size="1",
                      custom_attrs={"data-testid": "inventory-current-only"}),
            align="center", spacing="1")),
        rx.text("Bookkeeping columns", size="1", color_scheme="gray"),
        rx.switch(checked=PreviewState.show_bookkeeping, on_change=PreviewState.toggle_bookkeeping, size="1",
                  custom_attrs={"data-testid": "inventory-show-bookkeeping"}),
        rx.button(rx.icon("download", size=12), "Export CSV", size="1", variant="soft",
                  on_click=PreviewState.export_csv, custom_attrs={"data-testid": "inventory-export-csv"}),
        width="100%",
        align="center",
        spacing="2",
        wrap="wrap",
    )


def _pager() -> rx.Component:
    return rx.hstack(
        rx.icon_button(rx.icon("chevrons-left", size=14), size="1", variant="soft", on_click=PreviewState.first_page,
                       disabled=~PreviewState.has_previous, custom_attrs={"data-testid": "inventory-preview-first"}),
        rx.button(rx.icon("chevron-left", size=14), "Previous", size="1", variant="soft",
                  on_click=PreviewState.previous_page, disabled=~PreviewState.has_previous,
                  custom_attrs={"data-testid": "inventory-preview-prev"}),
        rx.text(PreviewState.page_text, size="2", custom_attrs={"data-testid": "inventory-preview-page"}),
        rx.button("Next", rx.icon("chevron-right", size=14), size="1", variant="soft",
                  on_click=PreviewState.next_page, disabled=~PreviewState.has_next,
                  custom_attrs={"data-testid": "inventory-preview-next"}),
        rx.cond(PreviewState.loading, rx.spinner(size="1")),
        rx.spacer(),
        rx.text(PreviewState.plan_text, " · ", PreviewState.elapsed, size="1", color_scheme="gray"),
        width="100%",
        align="center",
        spacing="2",
    )


def _detail_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(PreviewState.detail_title),
            rx.scroll_area(
                rx.el.pre(PreviewState.detail_text, style={"white_space": "pre-wrap", "font_size": "12px",
                                                           "margin": 0}),
                max_height="60vh", type="auto",
            ),
            rx.dialog.close(rx.button("Close", variant="soft", margin_top="0.75rem")),
            max_width="48rem",
            custom_attrs={"data-testid": "inventory-cell-detail"},
        ),
        open=PreviewState.detail_open,
        on_open_change=PreviewState.set_detail_open,
    )


def preview_panel() -> rx.Component:
    return rx.vstack(
        _filter_bar(),
        error_text(PreviewState.error, "inventory-preview-error", size="1"),
        rx.cond(PreviewState.warning != "", rx.callout(PreviewState.warning, icon="triangle-alert", color_scheme="amber",
                                                      size="1", width="100%",
                                                      custom_attrs={"data-testid": "inventory-preview-warning"})),
        rx.cond(PreviewState.export_status != "", rx.text(PreviewState.export_status, size="1", color_scheme="gray")),
        _pager(),
        _grid(),
        _detail_dialog(),
        width="100%",
        spacing="2",
        custom_attrs={"data-testid": "inventory-preview"},
    )
