"""The IDE's Monaco editor, bundled locally (see assets/ide/stackql_editor.jsx) — never loaded from a CDN."""

from __future__ import annotations

import json

import reflex as rx
from reflex_monaco.monaco import MonacoEditor


class StackqlEditor(MonacoEditor):
    """reflex-monaco's editor with Monaco from the `monaco-editor` npm package, StackQL words, catalog
    completion and Ctrl/Cmd+Enter.

    `value` is applied when `value_revision` changes (a server-side edit) or before the user types;
    `on_change` receives the text (debounced, flushed on blur/run/unmount); `on_run` receives
    `{"text", "selection", "offset"}` (offset in code points).
    """

    library = "$/public/ide/stackql_editor.jsx"
    tag = "StackqlEditor"
    is_default = False
    lib_dependencies: list[str] = ["@monaco-editor/react@4.7.0", "monaco-editor@0.55.1"]

    # Bumped by the backend whenever it changes the text itself (open a saved query, insert SQL…).
    value_revision: rx.Var[int]

    # Ctrl/Cmd+Enter, or run() from the Run button.
    on_run: rx.EventHandler[rx.event.passthrough_event_spec(dict)]


stackql_editor = StackqlEditor.create


def run_script() -> rx.event.EventSpec:
    """Run the selection, else the statement under the cursor (what Ctrl/Cmd+Enter does)."""
    return rx.call_script("window.__stackqlIde && window.__stackqlIde.run()")


def insert_script(text: str) -> rx.event.EventSpec:
    """Insert `text` at the editor's cursor (replacing the selection)."""
    return rx.call_script(f"window.__stackqlIde && window.__stackqlIde.insert({json.dumps(text)})")


# ============================================================================ the editor panel


def _provider_select() -> rx.Component:
    from stackql_inventory.pages.ide import IdeState

    return rx.select.root(
        rx.select.trigger(placeholder="Provider", custom_attrs={"data-testid": "ide-provider-select"}),
        rx.select.content(
            rx.select.item("No provider", value="none"),
            rx.foreach(IdeState.providers, lambda p: rx.select.item(p, value=p)),
        ),
        value=IdeState.provider_choice,
        on_change=IdeState.set_provider,
        size="2",
    )


def _toolbar() -> rx.Component:
    from stackql_inventory.components.query_library import LibraryState
    from stackql_inventory.pages.ide import IdeState
    from stackql_inventory.state.app_state import AppState

    return rx.hstack(
        _provider_select(),
        rx.button(
            rx.icon("play", size=16), "Run",
            on_click=run_script(),
            disabled=IdeState.running,
            title="Run the selection, else the statement under the cursor (Ctrl/Cmd+Enter)",
            custom_attrs={"data-testid": "ide-run"},
        ),
        rx.button(
            rx.icon("square", size=14), "Cancel",
            on_click=IdeState.cancel_query,
            disabled=~IdeState.running,
            color_scheme="red",
            variant="soft",
            custom_attrs={"data-testid": "ide-cancel"},
        ),
        rx.button(
            rx.icon("save", size=16), "Save",
            on_click=LibraryState.open_save,
            variant="soft",
            disabled=~AppState.can_edit,
            title=rx.cond(AppState.can_edit, "Save to the query library", "Read-only access: you can run queries"),
            custom_attrs={"data-testid": "ide-save"},
        ),
        rx.button(
            rx.icon("calendar-clock", size=16), "Schedule…",
            on_click=rx.redirect(IdeState.schedule_href),
            variant="soft",
            disabled=~AppState.can_edit | (IdeState.loaded_query_id == 0) | IdeState.unsaved_changes,
            title=rx.cond(
                ~AppState.can_edit, "Read-only access: ask an editor to schedule queries",
                rx.cond(IdeState.loaded_query_id == 0, "Save the query first: a schedule runs a saved query",
                        rx.cond(IdeState.unsaved_changes, "Save your changes first: a schedule runs the saved text",
                                "Run this saved query on a schedule into an inventory table")),
            ),
            custom_attrs={"data-testid": "ide-schedule"},
        ),
        rx.cond(
            IdeState.running,
            rx.hstack(
                rx.spinner(size="2"),
                rx.text("Running… ", IdeState.elapsed_live, size="2", custom_attrs={"data-testid": "ide-running"}),
                align="center",
                spacing="2",
            ),
        ),
        rx.spacer(),
        rx.cond(
            IdeState.loaded_query_id > 0,
            rx.badge(rx.icon("bookmark", size=12, flex_shrink="0"),
                     rx.text(IdeState.loaded_query_name, overflow="hidden", text_overflow="ellipsis",
                             white_space="nowrap", as_="span", custom_attrs={"data-testid": "ide-loaded-query"}),
                     rx.icon("x", size=12, flex_shrink="0", cursor="pointer", on_click=IdeState.detach_query,
                             aria_label="Stop editing this saved query",
                             custom_attrs={"data-testid": "ide-detach-query"}),
                     variant="soft", max_width="15rem",
                     title=IdeState.loaded_query_name + " — Save updates it; × makes the next Save a new query"),
        ),
        # Only on wide windows: beside Save and Schedule… and the loaded query's name it would be cut off.
        rx.text("Ctrl/⌘+Enter runs the statement at the cursor", size="1", color_scheme="gray", white_space="nowrap",
                overflow="hidden", text_overflow="ellipsis", min_width="0",
                display=["none", "none", "none", "none", "none", "block"]),
        width="100%",
        align="center",
        spacing="2",
        flex_wrap="wrap",  # at 1280 px the buttons and the loaded query's name take two lines, never overflow
    )


def editor_panel() -> rx.Component:
    """Toolbar (provider, Run, Cancel, Save, progress) above the editor."""
    from stackql_inventory.pages.ide import IdeState

    return rx.vstack(
        _toolbar(),
        rx.cond(
            IdeState.providers_error != "",
            rx.text(IdeState.providers_error, size="1", color_scheme="red"),
        ),
        rx.box(
            stackql_editor(
                value=IdeState.sql,
                value_revision=IdeState.sql_rev,
                on_change=IdeState.set_sql,
                on_run=IdeState.run_query,
                height="260px",
                width="100%",
            ),
            width="100%",
            border=f"1px solid {rx.color('gray', 6)}",
            border_radius="6px",
            overflow="hidden",
            custom_attrs={"data-testid": "ide-editor"},
        ),
        width="100%",
        spacing="2",
    )
