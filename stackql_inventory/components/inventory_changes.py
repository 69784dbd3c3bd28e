"""Changes between two runs of the selected table: rows added, removed and changed, changed cells highlighted."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import error_text
from stackql_inventory.services import inventory_diff
from stackql_inventory.services.errors import UserFacingError

CELL_CHARS = 60


def _clip(value: str | None) -> str:
    if value is None:
        return "NULL"
    text = " ".join(value.split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


class ChangesState(rx.State):
    """Run pickers and the diff of the selected table."""

    # The table being compared ('' when none).
    table: str = ""
    # How it is written: history | append | replace | ''.
    mode: str = ""
    # Runs to pick from: {"id", "label"}, newest first.
    runs: list[dict[str, str]] = []
    # The chosen older run (id as text).
    from_run: str = ""
    # The chosen newer run (id as text).
    to_run: str = ""
    # Result columns of the diff (bookkeeping columns left out).
    columns: list[str] = []
    # One kind per diff row: added | removed | changed.
    kinds: list[str] = []
    # Per diff row, its cells {"text", "changed"}.
    cells: list[list[dict[str, str]]] = []
    # Totals per kind, as text.
    totals: dict[str, str] = {}
    # More rows than shown.
    truncated: bool = False
    # Duplicate keys, no key columns, … ('' when nothing to say).
    note: str = ""
    # How rows are matched between the two runs.
    matched_on: str = ""
    # True while runs load or the comparison runs.
    loading: bool = False
    # What is happening now (shown beside the spinner).
    status: str = ""
    # Why the comparison could not be made ('' when fine).
    error: str = ""
    # Server time of the comparison.
    elapsed: str = ""
    # A comparison result is shown.
    compared: bool = False

    @rx.event(background=True)
    async def open_table(self, name: str):
        """Load the runs of `name` and, when there are two, compare the last two."""
        async with self:
            self.table, self.error, self.compared, self.runs = name, "", False, []
            self.cells, self.kinds, self.columns, self.totals, self.note = [], [], [], {}, ""
            self.loading, self.status = True, "Loading runs…"
        try:
            mode, runs = await rx.run_in_thread(lambda: inventory_diff.run_choices(name))
        except UserFacingError as e:
            async with self:
                if self.table == name:
                    self.loading, self.status, self.error = False, "", e.message
            return
        async with self:
            if self.table != name:
                return
            self.mode = mode
            self.runs = [
                {"id": str(r.run_id),
                 "label": f"run {r.run_id} · {formatting.timestamp(r.finished_at) or 'time unknown'}"
                          + (f" · {formatting.count(r.rows)} rows" if r.rows is not None else "")}
                for r in runs
            ]
            self.to_run = self.runs[0]["id"] if runs else ""
            self.from_run = self.runs[1]["id"] if len(runs) > 1 else ""
            self.loading, self.status = False, ""
            ready = bool(self.from_run and self.to_run)
        if ready:
            await self._compare()

    @rx.event
    def set_from_run(self, value: str):
        self.from_run = value

    @rx.event
    def set_to_run(self, value: str):
        self.to_run = value

    @rx.event(background=True)
    async def compare(self):
        """Compare the two chosen runs."""
        await self._compare()

    async def _compare(self):
        async with self:
            if not (self.from_run and self.to_run):
                self.error = "Pick two runs to compare."
                return
            table, a, b = self.table, int(self.from_run), int(self.to_run)
            self.loading, self.error, self.status = True, "", f"Comparing run {a} with run {b}…"
        try:
            diff = await rx.run_in_thread(lambda: inventory_diff.diff_runs(table, a, b))
        except UserFacingError as e:
            async with self:
                self.loading, self.status, self.error = False, "", e.message
            return
        async with self:
            if self.table != table:
                return
            self.columns = diff.columns
            self.kinds = [r.kind for r in diff.rows]
            self.cells = [
                [{"text": (f"{_clip(c.old)} → {_clip(c.new)}" if c.changed else _clip(c.new if r.kind != "removed"
                                                                                       else c.old)),
                  "changed": "1" if c.changed else ""}
                 for c in r.cells]
                for r in diff.rows
            ]
            self.totals = {k: formatting.count(v) for k, v in diff.totals.items()}
            self.truncated, self.note = diff.truncated, diff.note
            keys = ", ".join(diff.key_columns)
            if diff.mode == "history":
                self.matched_on = ("Resources as of each run (SCD2 versions valid then), matched on the runner's key "
                                   + (f"({keys})." if keys else "hash."))
            else:
                self.matched_on = (f"Rows each run wrote, matched on {keys}." if keys
                                   else "Rows each run wrote, compared whole.")
            self.elapsed = formatting.duration(diff.elapsed_ms / 1000)
            self.loading, self.status, self.compared = False, "", True

    @rx.var
    def comparable(self) -> bool:
        return self.mode in ("history", "append")


def _cell(cell: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.cell(
        rx.text(cell["text"], size="1"),
        background=rx.cond(cell["changed"] != "", rx.color("amber", 4), "transparent"),
        white_space="nowrap",
        custom_attrs={"data-testid": rx.cond(cell["changed"] != "", "inventory-diff-changed", "inventory-diff-cell")},
    )


def _row(cells: rx.Var[list[dict[str, str]]], i: rx.Var[int]) -> rx.Component:
    kind = ChangesState.kinds[i]
    return rx.table.row(
        rx.table.cell(rx.badge(kind, color_scheme=rx.match(kind, ("added", "green"), ("removed", "red"), "amber"),
                               variant="soft")),
        rx.foreach(cells, _cell),
        custom_attrs={"data-testid": "inventory-diff-row", "data-kind": kind},
    )


def _summary() -> rx.Component:
    return rx.hstack(
        rx.badge("+ ", ChangesState.totals.get("added", "0"), " added", color_scheme="green", size="2"),
        rx.badge("− ", ChangesState.totals.get("removed", "0"), " removed", color_scheme="red", size="2"),
        rx.badge("~ ", ChangesState.totals.get("changed", "0"), " changed", color_scheme="amber", size="2"),
        rx.cond(ChangesState.truncated, rx.text("(first rows of each kind shown)", size="1", color_scheme="gray")),
        rx.spacer(),
        rx.text(ChangesState.elapsed, size="1", color_scheme="gray"),
        width="100%",
        align="center",
        custom_attrs={"data-testid": "inventory-diff-summary"},
    )


def _pickers() -> rx.Component:
    def picker(label: str, value: rx.Var, handler, testid: str) -> rx.Component:  # noqa: ANN001
        return rx.hstack(
            rx.text(label, size="2"),
            rx.select.root(
                rx.select.trigger(placeholder="run", custom_attrs={"data-testid": testid}),
                rx.select.content(rx.foreach(ChangesState.runs, lambda r: rx.select.item(r["label"], value=r["id"]))),
                value=value, on_change=handler, size="1",
            ),
            align="center", spacing="1",
        )

    return rx.hstack(
        picker("From", ChangesState.from_run, ChangesState.set_from_run, "inventory-diff-from"),
        picker("to", ChangesState.to_run, ChangesState.set_to_run, "inventory-diff-to"),
        rx.button("Compare", size="1", on_click=ChangesState.compare, loading=ChangesState.loading,
                  custom_attrs={"data-testid": "inventory-diff-run"}),
        rx.cond(ChangesState.loading, rx.text(ChangesState.status, size="1", color_scheme="gray")),
        align="center",
        spacing="3",
        wrap="wrap",
    )


def changes_panel() -> rx.Component:
    return rx.vstack(
        error_text(ChangesState.error, "inventory-diff-error", size="1"),
        rx.cond(
            ChangesState.comparable,
            rx.vstack(
                rx.cond(ChangesState.runs.length() < 2,
                        rx.text("This table has fewer than two successful runs to compare yet.", size="2",
                                color_scheme="gray"),
                        _pickers()),
                rx.cond(ChangesState.compared, rx.text(ChangesState.matched_on, size="1", color_scheme="gray")),
                rx.cond(ChangesState.note != "", rx.text(ChangesState.note, size="1", color_scheme="amber")),
                rx.cond(ChangesState.compared, _summary()),
                rx.cond(
                    ChangesState.compared & (ChangesState.kinds.length() > 0),
                    rx.scroll_area(
                        rx.table.root(
                            rx.table.header(rx.table.row(
                                rx.table.column_header_cell(""),
                                rx.foreach(ChangesState.columns,
                                           lambda c: rx.table.column_header_cell(c, white_space="nowrap")),
                            )),
                            rx.table.body(rx.foreach(ChangesState.cells, _row)),
                            size="1", width="100%",
                        ),
                        max_height="28rem", type="auto", scrollbars="both",
                    ),
                ),
                rx.cond(ChangesState.compared & (ChangesState.kinds.length() == 0),
                        rx.text("No differences between these runs.", size="2")),
                width="100%",
                spacing="2",
            ),
            rx.cond(
                ChangesState.loading,
                rx.hstack(rx.spinner(size="1"), rx.text(ChangesState.status, size="2")),
                rx.text("Changes between runs need an append or history table: replace mode keeps only the latest "
                        "result.", size="2", color_scheme="gray"),
            ),
        ),
        width="100%",
        spacing="2",
        custom_attrs={"data-testid": "inventory-changes"},
    )
