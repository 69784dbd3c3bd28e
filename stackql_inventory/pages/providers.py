"""Providers page: credential mappings from provider env vars to secrets, their status and a connection test."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.components.provider_card import provider_card
from stackql_inventory.components.provider_dialogs import delete_dialog, mapping_form_dialog, value_dialog
from stackql_inventory.components.provider_state import ProvidersState
from stackql_inventory.state.app_state import AppState

__all__ = ["ProvidersState", "page"]


def _backend_help() -> rx.Component:
    return rx.cond(
        ProvidersState.backend == "databricks",
        rx.callout.root(
            rx.callout.icon(rx.icon("info")),
            rx.callout.text(
                "Secret values live in Databricks Secrets. The app checks that each one exists by listing its "
                "scope's keys, and reads values only when a query runs. Store a value with the Databricks CLI, "
                "which prompts for it: ", rx.code("databricks secrets put-secret <scope> <key>"),
                ". The app's service principal needs READ on the scope.",
            ),
            color_scheme="blue", width="100%", custom_attrs={"data-testid": "provider-databricks-help"},
        ),
        rx.text("Secret values are stored as files readable only by the app's user, in the app's data folder. "
                "Use “Set value” on a row to store one; it is never shown again.",
                size="2", color_scheme="gray", custom_attrs={"data-testid": "provider-local-help"}),
    )


def _notice() -> rx.Component:
    color = rx.match(ProvidersState.notice_kind, ("warning", "amber"), ("error", "red"), "green")
    icon = rx.match(ProvidersState.notice_kind, ("success", rx.icon("circle-check", size=16)),
                    rx.icon("triangle-alert", size=16))
    return rx.cond(
        ProvidersState.notice != "",
        rx.callout.root(
            rx.callout.icon(icon),
            rx.hstack(
                rx.callout.text(ProvidersState.notice),
                rx.spacer(),
                rx.icon_button(rx.icon("x", size=14), size="1", variant="ghost", color_scheme="gray",
                               on_click=ProvidersState.dismiss_notice, title="Dismiss"),
                width="100%", align="center",
            ),
            color_scheme=color, size="1", width="100%",
            custom_attrs={"data-testid": "provider-notice", "data-kind": ProvidersState.notice_kind},
        ),
    )


def _actions() -> rx.Component:
    return rx.hstack(
        rx.cond(
            ProvidersState.mappings.length() > 0,
            rx.button(rx.icon("shield-check", size=16), "Validate all", variant="soft",
                      loading=ProvidersState.validating == "*", on_click=ProvidersState.validate("*"),
                      custom_attrs={"data-testid": "provider-validate-all"}),
        ),
        rx.button(rx.icon("plus", size=16), "Map credentials", on_click=ProvidersState.open_new,
                  disabled=~AppState.can_edit, custom_attrs={"data-testid": "provider-new"}),
        spacing="2",
    )


def page() -> rx.Component:
    return page_frame(
        "providers",
        "Providers",
        _backend_help(),
        error_text(ProvidersState.load_error),
        _notice(),
        rx.cond(
            ProvidersState.mappings.length() > 0,
            rx.vstack(rx.foreach(ProvidersState.cards, provider_card), spacing="4", width="100%"),
            empty_state("key-round", "No provider credentials mapped yet",
                        "Map each provider's credential variables to secrets to query it.", "providers-empty",
                        read_only_hint="An editor maps each provider's credential variables to secrets, so that "
                                       "it can be queried."),
        ),
        mapping_form_dialog(),
        value_dialog(),
        delete_dialog(),
        actions=_actions(),
    )
