"""The schedule list: one row per schedule with its actions, and the run history under a row when opened."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.state.app_state import AppState

STATUS_COLORS = {"success": "green", "failed": "red", "running": "blue", "queued": "amber", "skipped": "gray",
                 "cancelled": "gray", "never run": "gray"}
_COLUMNS = ("Query", "Schedule", "Next run", "Target", "State", "Last run", "Job", "")


def status_badge(status: rx.Var[str], testid: str) -> rx.Component:
    """A run status as a coloured badge (spinner while running)."""
    return rx.badge(
        rx.cond((status == "running") | (status == "queued"), rx.spinner(size="1")),
        status,
        color_scheme=rx.match(status, *[(k, v) for k, v in STATUS_COLORS.items()], "gray"),
        variant="soft",
        custom_attrs={"data-testid": testid},
    )


def _action(icon: str, label: str, testid: str, on_click, disabled) -> rx.Component:  # noqa: ANN001
    return rx.tooltip(
        rx.icon_button(rx.icon(icon, size=15), on_click=on_click, disabled=disabled, size="1", variant="ghost",
                       aria_label=label, custom_attrs={"data-testid": testid}),
        content=label,
    )


def _schedule_cell(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.vstack(
        rx.text(r["description"], size="2"),
        rx.hstack(rx.code(r["cron"], size="1", white_space="nowrap"),
                  rx.badge(r["timezone"], variant="outline", size="1"), spacing="2", wrap="wrap"),
        spacing="1",
    )


def _target_cell(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.vstack(
        # Wraps after the schema (and inside a very long table name) instead of pushing the row's actions out
        # of a 1280 px window.
        rx.code(r["schema"], ".", rx.el.wbr(), r["table"], size="1", overflow_wrap="anywhere"),
        rx.hstack(
            rx.badge(r["mode"], variant="surface", size="1"),
            rx.cond(r["keys"] != "", rx.text("keys: ", r["keys"], size="1", color_scheme="gray")),
            spacing="2", align="center",
        ),
        spacing="1",
    )


def _last_run_cell(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.vstack(
        status_badge(r["status"], "schedule-status"),
        rx.text(r["last_run"], size="1", color_scheme="gray", white_space="nowrap"),
        rx.cond(r["problem"] != "",
                rx.text(r["problem"], size="1", color_scheme="red", custom_attrs={"data-testid": "schedule-problem"})),
        spacing="1",
    )


def _job_cell(r: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.cond(
        r["job_id"] != "",
        rx.cond(
            r["job_url"] != "",
            rx.link(r["job_id"], href=r["job_url"], is_external=True, size="2",
                    custom_attrs={"data-testid": "schedule-job-link"}),
            rx.text(r["job_id"], size="2"),
        ),
        rx.text("local", size="1", color_scheme="gray"),
    )


def _actions(S, r: rx.Var[dict[str, str]]) -> rx.Component:  # noqa: ANN001, N803 - the page's state class
    busy = (S.busy_id == r["id"]) | ~AppState.can_edit
    return rx.hstack(
        _action("play", "Run now", "schedule-run-now", S.run_now(r["id"]), busy | (r["in_flight"] != "")),
        rx.cond(
            r["is_active"] != "",
            _action("pause", "Pause", "schedule-pause", S.pause(r["id"]), busy),
            _action("circle-play", "Resume", "schedule-resume", S.resume(r["id"]), busy),
        ),
        _action("pencil", "Edit", "schedule-edit", S.open_edit(r["id"]), busy),
        _action("history", "Run history", "schedule-history", S.toggle_history(r["id"]), S.busy_id == r["id"]),
        _action("trash-2", "Delete", "schedule-delete", S.ask_delete(r["id"]), busy),
        spacing="3",
        justify="end",
    )


def _run_row(h: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.cond(h["url"] != "", rx.link(h["id"], href=h["url"], is_external=True), rx.text(h["id"]))),
        rx.table.cell(h["trigger"]),
        rx.table.cell(h["started"]),
        rx.table.cell(h["duration"]),
        rx.table.cell(h["rows"]),
        rx.table.cell(status_badge(h["status"], "schedule-run-status")),
        rx.table.cell(rx.cond(
            h["error"] != "",
            rx.el.details(
                rx.el.summary(rx.cond(h["error_class"] != "", h["error_class"], "error"), cursor="pointer"),
                rx.text(h["error"], size="1", white_space="pre-wrap",
                        custom_attrs={"data-testid": "schedule-run-error"}),
            ),
        )),
        custom_attrs={"data-testid": "schedule-run"},
    )


def _history(S) -> rx.Component:  # noqa: ANN001, N803
    return rx.box(
        rx.hstack(rx.text("Run history", weight="medium", size="2"),
                  rx.cond(S.history_loading, rx.spinner(size="1")), spacing="2", align="center"),
        rx.cond(S.history_error != "", rx.text(S.history_error, color_scheme="red", size="1")),
        rx.cond(
            S.history.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in
                                               ("Run", "Trigger", "Started", "Duration", "Rows", "Status", "Error")])),
                rx.table.body(rx.foreach(S.history, _run_row)),
                size="1", width="100%",
            ),
            rx.cond(~S.history_loading & (S.history_error == ""),
                    rx.text("No runs yet.", size="1", color_scheme="gray")),
        ),
        padding="0.75rem",
        background=rx.color("gray", 2),
        border_radius="6px",
        custom_attrs={"data-testid": "schedule-runs"},
    )


def schedule_table(S) -> rx.Component:  # noqa: ANN001, N803 - SchedulesState (passed to avoid an import cycle)
    """Every schedule, with its actions; the run history opens under its row."""

    def row(r: rx.Var[dict[str, str]]) -> rx.Component:
        return rx.fragment(
            rx.table.row(
                rx.table.cell(rx.text(r["query"], weight="medium")),
                rx.table.cell(_schedule_cell(r)),
                rx.table.cell(rx.vstack(
                    rx.text(r["next_run"], size="2", white_space="nowrap"),
                    rx.cond(r["backoff"] != "", rx.text(r["backoff"], size="1", color_scheme="amber")),
                    spacing="1",
                )),
                rx.table.cell(_target_cell(r)),
                rx.table.cell(rx.badge(r["active"], color_scheme=rx.cond(r["is_active"] != "", "green", "gray"),
                                       variant="outline")),
                rx.table.cell(_last_run_cell(r)),
                rx.table.cell(_job_cell(r)),
                rx.table.cell(_actions(S, r)),
                custom_attrs={"data-testid": "schedule-row", "data-schedule-id": r["id"],
                              "data-highlighted": rx.cond(S.highlight_id == r["id"], "true", "false")},
                align="center",
                background=rx.cond(S.highlight_id == r["id"], rx.color("indigo", 3), "transparent"),
            ),
            rx.cond(
                S.history_id == r["id"],
                rx.table.row(rx.table.cell(_history(S), col_span=len(_COLUMNS))),
            ),
        )

    return rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in _COLUMNS])),
        rx.table.body(rx.foreach(S.rows, row)),
        width="100%",
        variant="surface",
    )
