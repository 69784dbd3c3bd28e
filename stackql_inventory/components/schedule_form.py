"""The new/edit schedule dialog (query, cron with instant preview and next runs, zone, table, write mode)
and the delete confirmation."""

from __future__ import annotations

from zoneinfo import available_timezones

import reflex as rx

from stackql_inventory.components.layout import form_error
from stackql_inventory.db.models import INVENTORY_SCHEMA, WRITE_MODES
from stackql_inventory.services import cron

_MODE_HELP = {
    "replace": "Each run replaces the table's rows.",
    "append": "Each run adds its rows; older runs stay.",
    "history": "Keeps every version of each resource (slowly changing history), keyed by the key columns.",
}
_ZONES = sorted(z for z in available_timezones() if z not in ("localtime", "Factory") and not z.startswith(
    ("posix/", "right/")))


def _field(label: str, *children: rx.Component, hint: rx.Component | None = None) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="2", weight="medium"),
        *children,
        hint or rx.fragment(),
        spacing="1",
        width="100%",
    )


def _query_picker(S) -> rx.Component:  # noqa: ANN001, N803
    return rx.cond(
        S.queries.length() > 0,
        rx.select.root(
            rx.select.trigger(placeholder="Pick a saved query…", width="100%",
                              custom_attrs={"data-testid": "schedule-query-select"}),
            rx.select.content(rx.foreach(S.queries, lambda q: rx.select.item(q["name"], value=q["id"]))),
            value=S.form_query_id,
            on_change=S.set_form_query,
        ),
        rx.text("No saved queries yet: save one in the IDE first.", size="2", color_scheme="gray",
                custom_attrs={"data-testid": "schedule-query-select"}),
    )


def _cron_fields(S) -> rx.Component:  # noqa: ANN001, N803
    presets = rx.hstack(
        *[rx.button(label, size="1", variant="soft", type="button", on_click=S.apply_preset(expr),
                    custom_attrs={"data-testid": "schedule-preset"})
          for label, expr in cron.PRESETS],
        spacing="2", wrap="wrap",
    )
    preview = rx.cond(
        S.cron_error != "",
        rx.text(S.cron_error, size="2", color_scheme="red", custom_attrs={"data-testid": "schedule-cron-preview"}),
        rx.text(S.cron_preview, size="2", weight="medium", color_scheme="indigo",
                custom_attrs={"data-testid": "schedule-cron-preview"}),
    )
    next_runs = rx.vstack(
        rx.text("Next runs", size="1", color_scheme="gray"),
        rx.foreach(S.next_runs, lambda t: rx.text(t, size="1", font_family="monospace")),
        spacing="0",
        custom_attrs={"data-testid": "schedule-next-runs"},
    )
    return rx.vstack(
        _field(
            "Schedule (cron: minute hour day-of-month month day-of-week)",
            rx.input(value=S.form_cron, on_change=S.set_form_cron, debounce_timeout=150, placeholder="*/15 * * * *",
                     font_family="monospace", width="100%", custom_attrs={"data-testid": "schedule-cron"}),
            presets,
        ),
        _field(
            "Time zone",
            rx.input(value=S.form_timezone, on_change=S.set_form_timezone, debounce_timeout=150,
                     placeholder="UTC", width="100%",
                     custom_attrs={"data-testid": "schedule-timezone", "list": "schedule-timezones"}),
            rx.el.datalist(*[rx.el.option(value=z) for z in _ZONES], id="schedule-timezones"),
        ),
        rx.box(preview, rx.cond(S.next_runs.length() > 0, next_runs), padding="0.6rem", width="100%",
               background=rx.color("indigo", 2), border_radius="6px"),
        spacing="3",
        width="100%",
    )


def _target_fields(S) -> rx.Component:  # noqa: ANN001, N803
    return rx.vstack(
        _field(
            "Inventory table",
            rx.hstack(
                rx.code(f"{INVENTORY_SCHEMA}.", size="2"),
                rx.input(value=S.form_table, on_change=S.set_form_table, placeholder="aws_ec2_instances",
                         width="100%", custom_attrs={"data-testid": "schedule-target-table"}),
                align="center", spacing="1", width="100%",
            ),
            hint=rx.text("Lower-case letters, digits and underscores.", size="1", color_scheme="gray"),
        ),
        _field(
            "Write mode",
            rx.select.root(
                rx.select.trigger(width="100%", custom_attrs={"data-testid": "schedule-write-mode"}),
                rx.select.content(*[rx.select.item(m, value=m) for m in WRITE_MODES]),
                value=S.form_mode,
                on_change=S.set_form_mode,
            ),
            hint=rx.text(rx.match(S.form_mode, *list(_MODE_HELP.items()), ""), size="1", color_scheme="gray"),
        ),
        rx.cond(
            S.form_mode == "history",
            _field(
                "Key columns",
                rx.input(value=S.form_keys, on_change=S.set_form_keys, placeholder="instance_id, region",
                         width="100%", custom_attrs={"data-testid": "schedule-key-columns"}),
                hint=rx.text("Columns that identify one resource; empty: the whole row.", size="1",
                             color_scheme="gray"),
            ),
        ),
        spacing="3",
        width="100%",
    )


def schedule_dialog(S) -> rx.Component:  # noqa: ANN001, N803 - SchedulesState
    """The new/edit dialog; `form-error` says why saving failed, and nothing is saved then."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(S.editing_id != "", "Edit schedule", "New schedule")),
            rx.dialog.description("Run a saved query on a schedule into an inventory table.", size="2",
                                  color_scheme="gray", margin_bottom="0.75rem"),
            rx.vstack(
                _field("Saved query", _query_picker(S)),
                _cron_fields(S),
                _target_fields(S),
                form_error(S.form_error),
                rx.hstack(
                    rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button",
                                              custom_attrs={"data-testid": "schedule-cancel"})),
                    rx.button(rx.cond(S.saving, rx.spinner(size="1"), rx.icon("save", size=15)), "Save",
                              on_click=S.save, disabled=S.saving, custom_attrs={"data-testid": "schedule-save"}),
                    justify="end", width="100%", spacing="3",
                ),
                spacing="4",
                width="100%",
            ),
            max_width="600px",
        ),
        open=S.dialog_open,
        on_open_change=S.set_dialog_open,
    )


def delete_dialog(S) -> rx.Component:  # noqa: ANN001, N803 - SchedulesState
    """Confirm a delete; the inventory table is kept unless "drop table too" is ticked."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete schedule"),
            rx.alert_dialog.description(
                "Delete the schedule writing ", rx.code(S.delete_target),
                "? Its job stops; its run history is kept.", size="2",
            ),
            rx.box(
                rx.el.label(
                    rx.hstack(
                        rx.checkbox(checked=S.delete_drop, on_change=S.set_delete_drop, color_scheme="red",
                                    custom_attrs={"data-testid": "schedule-delete-drop-table"}),
                        rx.text("Also drop the table ", rx.code(S.delete_target), " and its data", size="2"),
                        spacing="2", align="center",
                    ),
                ),
                margin_y="1rem",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray",
                                                 custom_attrs={"data-testid": "schedule-delete-cancel"})),
                rx.alert_dialog.action(rx.button("Delete", color_scheme="red", on_click=S.confirm_delete,
                                                 custom_attrs={"data-testid": "schedule-delete-confirm"})),
                justify="end", spacing="3",
            ),
        ),
        open=S.delete_open,
        on_open_change=S.set_delete_open,
    )
