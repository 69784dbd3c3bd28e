"""The results grid: AG Grid Community (Infinite Row Model) reading windows of a server-side result."""

from __future__ import annotations

import reflex as rx


class ResultsGrid(rx.Component):
    """Shows result `result_id` of the result store; rows are fetched from /api/ide/results/<id>/rows
    block by block (sort, filter and resize happen on those requests), never sent whole."""

    library = "$/public/ide/results_grid.jsx"
    tag = "ResultsGrid"
    lib_dependencies: list[str] = ["ag-grid-react@36.2.0", "ag-grid-community@36.2.0"]

    # Id in the result store.
    result_id: rx.Var[str]
    # Column names in SELECT order.
    columns: rx.Var[list[str]]
    # number | boolean | timestamp | json | text per column (filters, alignment, JSON cells).
    column_types: rx.Var[list[str]]
    # Rows in the result (sizes the first block).
    row_count: rx.Var[int]
    # Dark colour scheme.
    dark: rx.Var[bool]
    # CSS height of the grid.
    height: rx.Var[str]

    # {result_id, shown, filtered}: rows matching the grid's filters, whenever that number changes.
    on_rows_shown: rx.EventHandler[rx.event.passthrough_event_spec(dict)]


results_grid = ResultsGrid.create


# ============================================================================ the results panel


def _status_bar() -> rx.Component:
    from stackql_inventory.components.chat import chat_actions
    from stackql_inventory.pages.ide import IdeState

    return rx.hstack(
        rx.cond(
            IdeState.has_result,
            rx.hstack(
                rx.badge(rx.cond(IdeState.grid_filtered, rx.icon("filter", size=12)), IdeState.row_badge_text,
                         variant="soft", size="2", title=IdeState.row_badge_title,
                         color_scheme=rx.cond(IdeState.grid_filtered, "amber", "indigo"),
                         custom_attrs={"data-testid": "ide-row-count"}),
                rx.badge(rx.icon("timer", size=12), IdeState.elapsed, variant="soft", color_scheme="gray", size="2",
                         custom_attrs={"data-testid": "ide-elapsed"}),
                spacing="2",
                align="center",
            ),
            rx.text("Results", weight="medium", size="2"),
        ),
        rx.spacer(),
        chat_actions(),
        rx.button(
            rx.icon("download", size=14), "CSV",
            on_click=IdeState.export_result("csv"),
            disabled=~IdeState.has_result,
            variant="soft", size="1",
            title="Download the whole result as CSV" + IdeState.export_note,
            custom_attrs={"data-testid": "ide-export-csv"},
        ),
        rx.button(
            rx.icon("download", size=14), "JSON",
            on_click=IdeState.export_result("json"),
            disabled=~IdeState.has_result,
            variant="soft", size="1",
            title="Download the whole result as JSON" + IdeState.export_note,
            custom_attrs={"data-testid": "ide-export-json"},
        ),
        width="100%",
        align="center",
        spacing="2",
    )


def _error_box() -> rx.Component:
    from stackql_inventory.pages.ide import IdeState

    return rx.callout.root(
        rx.callout.icon(rx.icon("circle-alert")),
        rx.vstack(
            rx.text(IdeState.error, weight="medium", white_space="pre-wrap",
                    custom_attrs={"data-testid": "ide-error-message"}),
            rx.cond(
                IdeState.error_statement != "",
                rx.vstack(
                    rx.text("Failing statement", size="1", color_scheme="gray"),
                    rx.code_block(IdeState.error_statement, language="sql", width="100%", font_size="12px",
                                  custom_attrs={"data-testid": "ide-error-statement"}),
                    width="100%",
                    spacing="1",
                ),
            ),
            rx.cond(
                IdeState.param_hints.length() > 0,
                rx.vstack(
                    rx.text("This resource needs these parameters (from SHOW METHODS):", size="2"),
                    rx.hstack(
                        rx.foreach(
                            IdeState.param_hints,
                            lambda h: rx.button(
                                rx.icon("plus", size=12), h["label"],
                                on_click=IdeState.add_param(h["param"]),
                                size="1", variant="surface",
                                title=h["resource"] + " · method " + h["method"],
                                custom_attrs={"data-testid": "ide-param-hint"},
                            ),
                        ),
                        wrap="wrap",
                        spacing="2",
                    ),
                    spacing="1",
                ),
            ),
            rx.cond(
                IdeState.error_detail != "",
                rx.el.details(
                    rx.el.summary("stackql's full message"),
                    rx.el.pre(IdeState.error_detail, white_space="pre-wrap", font_size="12px"),
                ),
            ),
            spacing="2",
            width="100%",
        ),
        color_scheme="red",
        width="100%",
        custom_attrs={"data-testid": "ide-error"},
    )


def results_panel() -> rx.Component:
    """Row count, elapsed time, exports and assistant actions above the grid (or the error / empty notice)."""
    from stackql_inventory.pages.ide import IdeState

    return rx.vstack(
        _status_bar(),
        rx.foreach(IdeState.notices, lambda n: rx.text(n, size="1", color_scheme="amber",
                                                         custom_attrs={"data-testid": "ide-notice"})),
        rx.cond(
            IdeState.truncated,
            rx.callout(
                "Only the first " + IdeState.row_count_text + " are shown: the row limit (" +
                "STACKQL_INVENTORY_ROW_LIMIT) cut the result. Narrow the query with WHERE to see the rest.",
                icon="scissors", color_scheme="amber", size="1", width="100%",
                custom_attrs={"data-testid": "ide-truncated"},
            ),
        ),
        rx.cond(IdeState.error != "", _error_box()),
        rx.cond(
            IdeState.has_result,
            rx.cond(
                IdeState.columns.length() == 0,
                rx.callout(
                    rx.cond(IdeState.messages.length() > 0, IdeState.messages.join("\n"),
                            "The statement ran and returned no result set."),
                    icon="circle-check", color_scheme="green", width="100%",
                    custom_attrs={"data-testid": "ide-messages"},
                ),
                rx.cond(
                    IdeState.row_count == 0,
                    rx.callout("The query returned no rows.", icon="inbox", color_scheme="gray", width="100%",
                               custom_attrs={"data-testid": "ide-empty-result"}),
                    results_grid(
                        result_id=IdeState.result_id,
                        columns=IdeState.columns,
                        column_types=IdeState.column_types,
                        row_count=IdeState.row_count,
                        dark=rx.color_mode_cond(False, True),
                        height=IdeState.grid_height,
                        on_rows_shown=IdeState.set_rows_shown,
                        custom_attrs={"data-testid": "ide-results",
                                      "data-engine-done": IdeState.engine_done_ms.to_string()},
                    ),
                ),
            ),
            rx.cond(
                IdeState.error == "",
                rx.center(rx.text("Run a query to see its results here.", size="2", color_scheme="gray"),
                          width="100%", height="120px", border=f"1px dashed {rx.color('gray', 6)}",
                          border_radius="6px"),
            ),
        ),
        width="100%",
        spacing="2",
    )
