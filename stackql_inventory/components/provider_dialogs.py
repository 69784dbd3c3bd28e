"""Dialogs of the Providers page: add/edit mappings (with presets), set a secret value, confirm a delete."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.components.layout import form_error
from stackql_inventory.components.provider_state import ProvidersState
from stackql_inventory.services import provider_presets


def _preset_picker() -> rx.Component:
    return rx.select.root(
        rx.select.trigger(placeholder="Start from a preset…", width="100%",
                          custom_attrs={"data-testid": "provider-preset"}),
        rx.select.content(*[
            rx.select.item(f"{p.provider} — {p.title}", value=p.provider,
                           custom_attrs={"data-testid": f"provider-preset-{p.provider}"})
            for p in provider_presets.PRESETS.values()
        ]),
        value=ProvidersState.form_preset,
        on_change=ProvidersState.apply_preset,
    )


def _form_line(line: rx.Var[dict[str, str]]) -> rx.Component:
    lid = line["lid"]
    return rx.vstack(
        rx.hstack(
            rx.input(name="env_var__" + lid, default_value=line["env_var"], placeholder="ENV_VAR_NAME",
                     flex="2", font_family="monospace", auto_complete="off",
                     custom_attrs={"data-testid": "provider-env-var", "aria-label": "Environment variable"}),
            rx.input(name="scope__" + lid, default_value=line["scope"], placeholder="secret scope", flex="1",
                     auto_complete="off",
                     custom_attrs={"data-testid": "provider-secret-scope", "aria-label": "Secret scope"}),
            rx.input(name="key__" + lid, default_value=line["key"], placeholder="secret key", flex="1.3",
                     auto_complete="off",
                     custom_attrs={"data-testid": "provider-secret-key", "aria-label": "Secret key"}),
            rx.cond(
                ProvidersState.form_mode == "new",
                rx.icon_button(rx.icon("x", size=14), type="button", variant="ghost", color_scheme="gray",
                               disabled=ProvidersState.form_lines.length() <= 1,
                               on_click=ProvidersState.remove_line(lid), title="Remove this variable",
                               custom_attrs={"data-testid": "provider-remove-line"}),
            ),
            width="100%", align="center",
        ),
        rx.cond(line["hint"] != "", rx.text(line["hint"], size="1", color_scheme="gray")),
        spacing="1", width="100%",
        key=lid,
    )


def mapping_form_dialog() -> rx.Component:
    """New mappings (one or more variables, optionally from a preset) or an edit of one mapping."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(ProvidersState.form_mode == "edit", "Edit credential mapping",
                                    "Map provider credentials")),
            rx.dialog.description(
                "Each variable is handed to stackql from the named secret when a query for this provider runs. "
                "Only the names are stored here, never a value.", size="2", color_scheme="gray",
                margin_bottom="1rem"),
            rx.el.form(
                rx.vstack(
                    rx.cond(ProvidersState.form_mode == "new", _preset_picker()),
                    rx.vstack(
                        rx.text("Provider", size="2", weight="medium"),
                        rx.input(name="provider", default_value=ProvidersState.form_provider,
                                 placeholder="e.g. aws", auto_complete="off", width="100%",
                                 key=ProvidersState.form_version.to_string(),
                                 custom_attrs={"data-testid": "provider-name"}),
                        spacing="1", width="100%",
                    ),
                    rx.vstack(
                        rx.hstack(rx.text("Variable", size="2", weight="medium", flex="2"),
                                  rx.text("Secret scope", size="2", weight="medium", flex="1"),
                                  rx.text("Secret key", size="2", weight="medium", flex="1.3"),
                                  rx.box(width="2rem"), width="100%"),
                        rx.foreach(ProvidersState.form_lines, _form_line),
                        spacing="2", width="100%",
                    ),
                    rx.cond(
                        ProvidersState.form_mode == "new",
                        rx.button(rx.icon("plus", size=14), "Add variable", type="button", variant="ghost",
                                  size="1", on_click=ProvidersState.add_line,
                                  custom_attrs={"data-testid": "provider-add-line"}),
                    ),
                    rx.cond(ProvidersState.form_notes != "",
                            rx.text(ProvidersState.form_notes, size="1", color_scheme="gray")),
                    form_error(ProvidersState.form_error),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", type="button", variant="soft", color_scheme="gray",
                                                  custom_attrs={"data-testid": "provider-cancel"})),
                        rx.button("Save", type="submit", loading=ProvidersState.form_saving,
                                  custom_attrs={"data-testid": "provider-save"}),
                        justify="end", width="100%",
                    ),
                    spacing="4", width="100%",
                ),
                on_submit=ProvidersState.save_form,
            ),
            max_width="52rem",
        ),
        open=ProvidersState.form_open,
        on_open_change=ProvidersState.set_form_open,
    )


def value_dialog() -> rx.Component:
    """A password field that writes the secret (local backend); the value is never sent back."""
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Set secret value"),
            rx.dialog.description(
                rx.text(ProvidersState.value_target, weight="medium", font_family="monospace",
                        custom_attrs={"data-testid": "provider-value-target"}),
                rx.text("Stored as a file only the app's user can read. It is not shown again; to change it, "
                        "save a new value.", size="2", color_scheme="gray"),
            ),
            rx.el.form(
                rx.vstack(
                    rx.input(type="password", name="value", placeholder="Paste the value", width="100%",
                             auto_complete="new-password", auto_focus=True,
                             custom_attrs={"data-testid": "provider-secret-value", "spellcheck": "false"}),
                    form_error(ProvidersState.value_error),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", type="button", variant="soft", color_scheme="gray")),
                        rx.button("Save value", type="submit", loading=ProvidersState.value_saving,
                                  custom_attrs={"data-testid": "provider-value-save"}),
                        justify="end", width="100%",
                    ),
                    spacing="3", width="100%", margin_top="0.75rem",
                ),
                on_submit=ProvidersState.save_value,
                reset_on_submit=True,
            ),
            max_width="32rem",
        ),
        open=ProvidersState.value_open,
        on_open_change=ProvidersState.set_value_open,
    )


def delete_dialog() -> rx.Component:
    """Confirmation before a mapping is deleted."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this mapping?"),
            rx.alert_dialog.description(
                rx.text("Queries will no longer receive ", rx.code(ProvidersState.delete_target), "."),
                rx.text("The secret itself is kept.", size="2", color_scheme="gray"),
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Keep it", variant="soft", color_scheme="gray",
                                                 on_click=ProvidersState.cancel_delete,
                                                 custom_attrs={"data-testid": "provider-delete-cancel"})),
                rx.alert_dialog.action(rx.button("Delete", color_scheme="red",
                                                 on_click=ProvidersState.confirm_delete,
                                                 custom_attrs={"data-testid": "provider-delete-confirm"})),
                justify="end", spacing="3", margin_top="1rem",
            ),
        ),
        open=ProvidersState.delete_id != "",
    )
