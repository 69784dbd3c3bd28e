"""IDE page: the StackQL editor, running a statement, its results, and the side panels (schema, library, history)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

import reflex as rx

from stackql_inventory import formatting, routes
from stackql_inventory.components.layout import page_frame
from stackql_inventory.services import engine, ide_queries
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import current_identity, list_error


class IdeState(rx.State):
    """Editor content, the current run and its result.

    Contract with the assistant panel (components/chat.py): `sql`, `provider`, `result_id`,
    `result_sql` are read through `get_state(IdeState)`; `insert_sql(text)` puts SQL into the editor.
    The rows of `result_id` are in services/result_store.py (`result_store.get(result_id)`), never here.
    """

    # Editor content (lives here so it survives navigation within the session).
    sql: str = ""
    # Provider whose credentials a run uses ('' = none chosen).
    provider: str = ""
    # Id of the last result in the server-side result store ('' = no result).
    result_id: str = ""
    # The statement that produced the last result.
    result_sql: str = ""

    # Bumped whenever the backend changes `sql` itself, so the editor applies it (typing does not bump it).
    sql_rev: int = 0
    # The saved query the editor was loaded from (0 = none), for "update in place".
    loaded_query_id: int = 0
    # Its name and owner.
    loaded_query_name: str = ""
    loaded_query_owner: str = ""
    # Its text as saved (the editor differs from it once edited: then it must be saved before scheduling).
    saved_sql: str = ""

    # Providers with credential mappings (the provider selector).
    providers: list[str] = []
    # Why the provider list could not be loaded ('' when fine).
    providers_error: str = ""

    # A run is in flight.
    running: bool = False
    # Live elapsed time of the run in flight.
    elapsed_live: str = ""
    # Column names, inferred types and size of the last result.
    columns: list[str] = []
    column_types: list[str] = []
    row_count: int = 0
    # Rows of the last result matching the grid's filters (-1 while no filter is set), for the row badge.
    filtered_count: int = -1
    # True when the row limit cut the last result; the limit applied.
    truncated: bool = False
    row_limit: int = 0
    # Engine time of the last run, formatted.
    elapsed: str = ""
    # When the engine returned the last result (epoch ms; the benchmark compares it with first paint).
    engine_done_ms: int = 0
    # stackql's non-error messages ("… successfully installed") and credential notices.
    messages: list[str] = []
    notices: list[str] = []
    # The last run's error ('' = none), the statement that failed, and stackql's full text.
    error: str = ""
    error_statement: str = ""
    error_detail: str = ""
    # Required parameters the failing statement lacks: {resource, method, param, label}.
    param_hints: list[dict[str, str]] = []

    # Run id of the query in flight (for Cancel), and whether Cancel was pressed for it.
    _run_id: str = ""
    _cancel_requested: bool = False

    # ---------------------------------------------------------------- derived
    @rx.var
    def has_result(self) -> bool:
        """A result is shown (possibly empty)."""
        return self.result_id != ""

    @rx.var
    def row_count_text(self) -> str:
        return f"{formatting.count(self.row_count)} row{'s' if self.row_count != 1 else ''}"

    @rx.var
    def grid_filtered(self) -> bool:
        """The grid's filters hide some rows of the result (or might: a filter is set)."""
        return self.filtered_count >= 0

    @rx.var
    def row_badge_text(self) -> str:
        """`1,500 rows`, or `100 of 1,500 rows` while the grid's filters are set."""
        return formatting.rows_shown(self.row_count, self.filtered_count if self.filtered_count >= 0 else None)

    @rx.var
    def row_badge_title(self) -> str:
        if self.filtered_count < 0:
            return "Rows in the result"
        return (f"{formatting.count(self.filtered_count)} of {formatting.count(self.row_count)} rows match the "
                "grid's filters. CSV and JSON exports contain the whole result, without the filters.")

    @rx.var
    def export_note(self) -> str:
        """Appended to the export buttons' tooltips while the grid is filtered."""
        if self.filtered_count < 0:
            return ""
        return f" (all {formatting.count(self.row_count)} rows: the grid's filters are not applied)"

    @rx.var
    def grid_height(self) -> str:
        """Tall enough for the rows, up to 440 px (the grid scrolls beyond)."""
        return f"{min(440, 60 + 28 * max(self.row_count, 1))}px"

    @rx.var
    def unsaved_changes(self) -> bool:
        """The editor holds a saved query whose text was changed since it was opened or saved."""
        return self.loaded_query_id > 0 and self.sql.strip() != self.saved_sql.strip()

    @rx.var
    def schedule_href(self) -> str:
        """Where "Schedule…" leads: the Schedules page's new-schedule dialog for the loaded query."""
        return f"{routes.SCHEDULES}?new={self.loaded_query_id}" if self.loaded_query_id > 0 else ""

    @rx.var
    def provider_choice(self) -> str:
        """The select's value ('none' stands for no provider)."""
        return self.provider or "none"

    # ---------------------------------------------------------------- loading
    @rx.event(background=True)
    async def load(self):
        """Load the configured providers (the selector)."""
        try:
            providers = await rx.run_in_thread(ide_queries.configured_providers)
            problem = ""
        except UserFacingError as e:
            providers, problem = [], await list_error(self, e)
        async with self:
            self.providers, self.providers_error = providers, problem
            if not self.provider and len(providers) == 1:
                self.provider = providers[0]

    # ---------------------------------------------------------------- editor
    @rx.event
    def set_sql(self, text: str):
        """The editor's text (debounced typing). Emptying the editor starts a new query: the next Save must
        not overwrite the saved query that was open before."""
        self.sql = text
        if not text.strip() and self.loaded_query_id:
            self.mark_saved(0, "", "", "")

    @rx.event
    def detach_query(self):
        """Keep the text but stop editing the saved query: the next Save creates a new one."""
        self.mark_saved(0, "", "", "")

    @rx.event
    def set_provider(self, choice: str):
        self.provider = "" if choice == "none" else choice

    def replace_sql(self, text: str) -> None:
        """Put `text` in the editor (a backend-side edit the editor must apply)."""
        self.sql = text
        self.sql_rev += 1

    @rx.event
    def insert_sql(self, text: str):
        """Put SQL from the assistant into the editor (appended as its own statement)."""
        text = text.strip()
        if not text:
            return
        current = self.sql.rstrip()
        self.replace_sql(f"{current}\n\n{text}\n" if current else f"{text}\n")

    def load_text(self, text: str, provider: str, *, query_id: int = 0, name: str = "", owner: str = "") -> None:
        """Open a saved query or a history entry in the editor."""
        self.replace_sql(text if text.endswith("\n") else text + "\n")
        if provider:
            self.provider = provider
        self.mark_saved(query_id, name, owner, text)

    def mark_saved(self, query_id: int, name: str, owner: str, text: str) -> None:
        """The editor's text is now saved as query `query_id` (or no saved query when 0)."""
        self.loaded_query_id, self.loaded_query_name, self.loaded_query_owner = query_id, name, owner
        self.saved_sql = text if query_id else ""

    @rx.event
    def add_param(self, param: str):
        """Add `param = ''` to the failing statement's WHERE clause."""
        try:
            self.replace_sql(ide_queries.add_param(self.sql, self.error_statement, param))
        except UserFacingError as e:
            return rx.toast.error(e.message)
        self.param_hints = [h for h in self.param_hints if h["param"] != param]
        self.error_statement = ide_queries.add_param(self.error_statement, self.error_statement, param)

    @rx.event
    def set_rows_shown(self, info: dict[str, Any]):
        """The grid says how many rows match its filters (ignored when about an earlier result)."""
        if not isinstance(info, dict) or info.get("result_id") != self.result_id:
            return
        shown = _int(info.get("shown"), -1)
        self.filtered_count = shown if info.get("filtered") is True and shown >= 0 else -1

    @rx.event
    def export_result(self, fmt: str):
        """Download the whole result as `fmt` (csv | json), or say why it cannot be (e.g. the server let it go)."""
        try:
            path = ide_queries.export_path(self.result_id, current_identity(self).user, fmt)
        except UserFacingError as e:
            return rx.toast.error(e.message)
        return rx.call_script(f"window.location.assign(window.__stackqlApiUrl({json.dumps(path)}))")

    # ---------------------------------------------------------------- running
    @rx.event(background=True)
    async def run_query(self, payload: dict[str, Any]):
        """Run the selection, else the statement under the cursor (Run button, Ctrl/Cmd+Enter)."""
        if not isinstance(payload, dict):
            payload = {}
        async with self:
            if self.running:
                return
            text = payload.get("text") if isinstance(payload.get("text"), str) else self.sql
            self.sql = text
            try:
                statement = ide_queries.choose_statement(text, str(payload.get("selection") or ""),
                                                         _int(payload.get("offset"), len(text)))
            except UserFacingError as e:
                self._show_error(e.message, "", "")
                return
            run_id = uuid.uuid4().hex
            self._run_id, self._cancel_requested, self.running, self.elapsed_live = run_id, False, True, "0.0 s"
            self.error, self.error_statement, self.error_detail, self.param_hints = "", "", "", []
            actor = current_identity(self)
            session = self.router.session.client_token
            provider = self.provider
        started_at = datetime.now(timezone.utc)
        t0 = time.monotonic()
        task = asyncio.ensure_future(rx.run_in_thread(partial(
            ide_queries.run, statement, actor=actor, session=session, run_id=run_id, provider=provider)))
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if not task.done():
                async with self:
                    self.elapsed_live = formatting.duration(time.monotonic() - t0)
                    cancel = self._cancel_requested
                if cancel:  # again: Cancel may have come before the engine registered the run
                    engine.cancel(run_id)
        try:
            result = task.result()
        except ide_queries.QueryFailed as failure:
            async with self:
                self._run_id, self.running = "", False
                self._clear_result()
                self.notices = list(failure.notices)
                self._show_error(failure.message, failure.statement, failure.detail)
                self.param_hints = [
                    {"resource": h.resource, "method": h.method, "param": p,
                     "label": f"{'WHERE' if i == 0 else 'AND'} {p} = ''"}
                    for h in failure.hints[:1] for i, p in enumerate(h.missing)
                ]
            await rx.run_in_thread(partial(ide_queries.record, actor, statement=statement, provider=provider,
                                           started_at=started_at, failure=failure))
        except UserFacingError as e:
            async with self:
                self._run_id, self.running = "", False
                self._clear_result()
                self._show_error(e.message, statement, e.detail)
            return
        except Exception:
            async with self:  # the app's exception handler reports it; the page must not stay "running"
                self._run_id, self.running = "", False
            raise
        else:
            async with self:
                self._run_id, self.running = "", False
                self.result_id, self.result_sql = result.result_id, result.statement
                self.columns, self.column_types = list(result.columns), list(result.types)
                self.row_count, self.truncated = result.row_count, result.truncated
                self.filtered_count = -1  # a new grid: no filters yet
                self.row_limit = result.row_limit or 0
                self.elapsed = formatting.duration(result.elapsed_s)
                self.engine_done_ms = int(result.finished_at * 1000)
                self.messages, self.notices = list(result.messages), list(result.notices)
            await rx.run_in_thread(partial(ide_queries.record, actor, statement=statement, provider=provider,
                                           started_at=started_at, result=result))
        from stackql_inventory.components.run_history import HistoryState

        yield HistoryState.load

    def _clear_result(self) -> None:
        """The failed run replaces the last result (its rows stay in the store until evicted)."""
        self.result_id, self.result_sql, self.columns, self.column_types = "", "", [], []
        self.row_count, self.truncated, self.elapsed, self.messages = 0, False, "", []
        self.filtered_count = -1

    def _show_error(self, message: str, statement: str, detail: str) -> None:
        self.error, self.error_statement = message, statement
        self.error_detail = detail if detail and detail not in message else ""

    @rx.event
    def cancel_query(self):
        """Stop the run in flight; the engine stays usable."""
        if self._run_id:
            self._cancel_requested = True
            engine.cancel(self._run_id)


# Widths of the side panel and the assistant column per breakpoint (initial, xs, sm, md, lg ≥1280, xl ≥1536).
SIDE_WIDTH = ["240px", "240px", "240px", "240px", "250px", "300px"]
CHAT_WIDTH = ["300px", "300px", "300px", "300px", "320px", "360px"]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def on_load() -> list[Any]:
    """The IDE page's on_load events (the side panels' states live beside their components)."""
    from stackql_inventory.components.query_library import LibraryState
    from stackql_inventory.components.run_history import HistoryState
    from stackql_inventory.components.schema_browser import SchemaState

    return [IdeState.load, LibraryState.load, LibraryState.open_linked, HistoryState.load, SchemaState.load]


def page() -> rx.Component:
    """Side panels | editor and results | assistant."""
    # Imported here: these modules define states that read IdeState, so they import this module.
    from stackql_inventory.components.chat import chat_panel
    from stackql_inventory.components.editor import editor_panel
    from stackql_inventory.components.query_library import query_library, save_dialogs
    from stackql_inventory.components.results_grid import results_panel
    from stackql_inventory.components.run_history import history_panel
    from stackql_inventory.components.schema_browser import schema_browser

    side = rx.tabs.root(
        rx.tabs.list(
            rx.tabs.trigger("Schema", value="schema", custom_attrs={"data-testid": "ide-tab-schema"}),
            rx.tabs.trigger("Library", value="library", custom_attrs={"data-testid": "ide-tab-library"}),
            rx.tabs.trigger("History", value="history", custom_attrs={"data-testid": "ide-tab-history"}),
            size="1",
        ),
        rx.tabs.content(schema_browser(), value="schema", padding_top="0.5rem"),
        rx.tabs.content(query_library(), value="library", padding_top="0.5rem"),
        rx.tabs.content(history_panel(), value="history", padding_top="0.5rem"),
        default_value="library",
        # Narrower side columns below 1536 px, so the editor keeps room for its toolbar and grid at 1280.
        width=SIDE_WIDTH,
        min_width=SIDE_WIDTH,
        height="calc(100vh - 150px)",
        overflow_y="auto",
    )
    center = rx.vstack(editor_panel(), results_panel(), spacing="3", flex="1", min_width="0")
    return page_frame(
        "ide", "Query IDE",
        rx.hstack(side, center, rx.box(chat_panel(), width=CHAT_WIDTH, min_width=CHAT_WIDTH, flex_shrink="0"),
                  spacing="4", width="100%", align="start"),
        save_dialogs(),
    )
