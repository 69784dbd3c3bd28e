"""One card per provider: its mappings with their secret status, validate, and the connection test."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.components.provider_state import ProvidersState
from stackql_inventory.state.app_state import AppState


def status_badge(row: rx.Var[dict[str, str]]) -> rx.Component:
    """OK / missing / no permission / error / not checked."""
    color = rx.match(row["status"], ("ok", "green"), ("missing", "amber"), ("no_permission", "orange"),
                     ("error", "red"), "gray")
    return rx.badge(row["status_label"], color_scheme=color, variant="soft", size="2",
                    custom_attrs={"data-testid": "provider-status", "data-state": row["status"]})


def _value_action(row: rx.Var[dict[str, str]]) -> rx.Component:
    """Local: a button opening the value dialog. Databricks: the CLI command that stores the value."""
    return rx.cond(
        ProvidersState.backend == "local",
        rx.button(rx.icon("key-round", size=14), "Set value", size="1", variant="soft",
                  disabled=~AppState.can_edit, on_click=ProvidersState.open_value(row["id"]),
                  custom_attrs={"data-testid": "provider-set-value"}),
        rx.code(row["cli"], size="1", custom_attrs={"data-testid": "provider-cli-command"}),
    )


def mapping_row(row: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["env_var"], size="2")),
        rx.table.cell(rx.text(row["scope"], "/", row["key"], size="2", font_family="monospace")),
        rx.table.cell(
            rx.vstack(
                status_badge(row),
                rx.cond(row["status_message"] != "",
                        rx.text(row["status_message"], size="1", color_scheme="gray",
                                custom_attrs={"data-testid": "provider-status-message"})),
                spacing="1", align="start",
            ),
            max_width="28rem",
        ),
        rx.table.cell(
            rx.hstack(
                _value_action(row),
                rx.icon_button(rx.icon("pencil", size=14), size="1", variant="ghost", disabled=~AppState.can_edit,
                               on_click=ProvidersState.open_edit(row["id"]), title="Edit mapping",
                               custom_attrs={"data-testid": "provider-edit"}),
                rx.icon_button(rx.icon("trash-2", size=14), size="1", variant="ghost", color_scheme="red",
                               disabled=~AppState.can_edit, on_click=ProvidersState.ask_delete(row["id"]),
                               title="Delete mapping", custom_attrs={"data-testid": "provider-delete"}),
                spacing="3", align="center", justify="end",
            ),
        ),
        align="center",
        custom_attrs={"data-testid": "provider-row"},
    )


def _test_param(card: rx.Var[dict[str, str]], param: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.cond(
        param["provider"] == card["provider"],
        rx.hstack(
            rx.text(param["label"], size="2", color_scheme="gray"),
            rx.tooltip(
                rx.input(name=param["name"], default_value=param["default"], placeholder="required", size="2",
                         width="16rem",
                         custom_attrs={"data-testid": "provider-test-param", "aria-label": param["label"]}),
                content=param["hint"],
            ),
            align="center", spacing="2",
        ),
    )


def _test_result(card: rx.Var[dict[str, str]]) -> rx.Component:
    color = rx.match(card["test_state"], ("ok", "green"), ("failed", "red"), "gray")
    icon = rx.match(card["test_state"], ("ok", rx.icon("circle-check", size=16)),
                    ("failed", rx.icon("circle-x", size=16)), rx.spinner(size="2"))
    return rx.cond(
        card["test_state"] != "",
        rx.callout.root(
            rx.callout.icon(icon),
            rx.vstack(
                rx.callout.text(card["test_summary"], weight="medium"),
                rx.cond(card["test_detail"] != "",
                        rx.el.pre(card["test_detail"], white_space="pre-wrap", word_break="break-word",
                                  font_size="12px", margin="0", width="100%",
                                  custom_attrs={"data-testid": "provider-test-detail"})),
                spacing="2", width="100%",
            ),
            color_scheme=color, width="100%",
            custom_attrs={"data-testid": "provider-test-result", "data-state": card["test_state"]},
        ),
    )


def provider_card(card: rx.Var[dict[str, str]]) -> rx.Component:
    """A provider's mappings, its validate button and its connection test."""
    running = card["test_state"] == "running"
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading(card["provider"], size="4", custom_attrs={"data-testid": "provider-card-name"}),
                rx.text(card["title"], size="2", color_scheme="gray"),
                rx.spacer(),
                rx.button(rx.icon("shield-check", size=14), "Validate", variant="soft", size="2",
                          loading=ProvidersState.validating == card["provider"],
                          on_click=ProvidersState.validate(card["provider"]),
                          custom_attrs={"data-testid": "provider-validate"}),
                width="100%", align="center",
            ),
            rx.table.root(
                rx.table.header(rx.table.row(
                    *[rx.table.column_header_cell(h) for h in ("Variable", "Secret", "Status", "")])),
                rx.table.body(rx.foreach(
                    ProvidersState.mappings,
                    lambda row: rx.cond(row["provider"] == card["provider"], mapping_row(row)))),
                width="100%", size="1",
            ),
            rx.el.form(
                rx.hstack(
                    rx.el.input(type="hidden", name="provider", default_value=card["provider"]),
                    rx.foreach(ProvidersState.test_params, lambda p: _test_param(card, p)),
                    rx.button(rx.icon("plug-zap", size=14), "Test connection", type="submit", size="2",
                              loading=running, custom_attrs={"data-testid": "provider-test"}),
                    align="center", spacing="2", wrap="wrap",
                ),
                on_submit=ProvidersState.test_connection,
            ),
            _test_result(card),
            spacing="3", width="100%",
        ),
        width="100%",
        custom_attrs={"data-testid": "provider-card", "data-provider": card["provider"]},
    )
