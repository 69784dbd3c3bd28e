"""The query library panel: search, open, duplicate, delete; and the save dialog (new or update in place)."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import empty_state, error_text, form_error
from stackql_inventory.pages.ide import IdeState
from stackql_inventory.services import identity, library
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import AppState, current_identity, list_error


class LibraryState(rx.State):
    """Saved queries shown in the library panel, and the save / delete dialogs."""

    # Saved queries shown (filtered by `search`).
    queries: list[dict[str, str]] = []
    # The library search text.
    search: str = ""
    # Why the library could not be loaded ('' when fine; database problems go to the banner).
    library_error: str = ""

    # The save dialog is open; whether it updates the loaded query ("update") or saves a new one ("new").
    save_open: bool = False
    save_mode: str = "new"
    # Prefill of the dialog's fields (the form commits its values on submit).
    save_name_default: str = ""
    save_description_default: str = ""
    # Why the save was refused ('' when fine).
    save_error: str = ""

    # The query awaiting delete confirmation (0 = none), its name, and why the delete was refused.
    delete_id: int = 0
    delete_name: str = ""
    delete_error: str = ""

    def _actor(self) -> identity.Identity:
        return current_identity(self)

    # ---------------------------------------------------------------- list
    @rx.event(background=True)
    async def load(self):
        """Load (or search) the library."""
        async with self:
            search = self.search
        try:
            found = await rx.run_in_thread(lambda: library.list_queries(search))
        except UserFacingError as e:
            problem = await list_error(self, e)
            async with self:
                self.library_error = problem
            return
        async with self:
            me = self._actor().user
            self.library_error = ""
            self.queries = [
                {
                    "id": str(q.id), "name": q.name, "description": q.description, "provider": q.provider,
                    "owner": q.created_by, "mine": "1" if q.created_by == me else "",
                    "updated": formatting.timestamp(q.updated_at),
                }
                for q in found
            ]

    @rx.event
    def set_search(self, text: str):
        self.search = text
        return LibraryState.load

    @rx.event(background=True)
    async def open_query(self, query_id: str):
        """Load a saved query into the editor (with its provider)."""
        try:
            q = await rx.run_in_thread(lambda: library.get(int(query_id)))
        except (UserFacingError, ValueError) as e:
            message = e.message if isinstance(e, UserFacingError) else "That query id is not valid."
            yield rx.toast.error(message)
            yield LibraryState.load
            return
        async with self:
            ide = await self.get_state(IdeState)
            ide.load_text(q.query_text, q.provider, query_id=q.id, name=q.name, owner=q.created_by)

    @rx.event(background=True)
    async def open_linked(self):
        """Open the saved query a link names (`/ide?query=<id>`, e.g. from the Inventory list).

        A query already open in the editor stays as it is, so reloading the page keeps unsaved edits.
        """
        async with self:
            wanted = self.router.url.query_parameters.get("query", "").strip()
            ide = await self.get_state(IdeState)
            current = ide.loaded_query_id
        if not wanted:
            return
        if not wanted.isdigit():
            yield rx.toast.error(f"The link names saved query '{wanted[:40]}', which is not a query id.")
            return
        if int(wanted) != current:
            yield LibraryState.open_query(wanted)

    # ---------------------------------------------------------------- save
    @rx.event
    async def open_save(self):
        """Open the save dialog: "update" when the editor holds one of my saved queries, else "new"."""
        ide = await self.get_state(IdeState)
        mine = ide.loaded_query_id > 0 and ide.loaded_query_owner == self._actor().user
        self.save_mode = "update" if mine else "new"
        self.save_name_default = ide.loaded_query_name if mine else ""
        self.save_description_default = ""
        if mine:
            for q in self.queries:
                if q["id"] == str(ide.loaded_query_id):
                    self.save_description_default = q["description"]
        self.save_error = ""
        self.save_open = True

    @rx.event
    def set_save_open(self, value: bool):
        self.save_open = value

    @rx.event
    def set_save_mode(self, mode: str | list[str]):
        self.save_mode = "update" if mode == "update" else "new"

    @rx.event(background=True)
    async def submit_save(self, form: dict):
        """Save the editor's text under the submitted name and description (new, or update in place)."""
        async with self:
            ide = await self.get_state(IdeState)
            draft = library.QueryDraft(name=str(form.get("name", "")), description=str(form.get("description", "")),
                                       provider=ide.provider, query_text=ide.sql)
            mode, query_id, actor = self.save_mode, ide.loaded_query_id, self._actor()
        try:
            if mode == "update" and query_id:
                saved = await rx.run_in_thread(lambda: library.update(actor, query_id, draft))
            else:
                saved = await rx.run_in_thread(lambda: library.save(actor, draft))
        except UserFacingError as e:
            async with self:
                self.save_error = e.message
            return
        async with self:
            self.save_open, self.save_error = False, ""
            ide = await self.get_state(IdeState)
            ide.mark_saved(saved.id, saved.name, saved.created_by, draft.query_text)
        yield rx.toast.success(f"Saved '{saved.name}'.")
        yield LibraryState.load

    # ---------------------------------------------------------------- duplicate / delete
    @rx.event(background=True)
    async def duplicate(self, query_id: str):
        async with self:
            actor = self._actor()
        try:
            copy = await rx.run_in_thread(lambda: library.duplicate(actor, int(query_id)))
        except UserFacingError as e:
            yield rx.toast.error(e.message)
            return
        yield rx.toast.success(f"Saved a copy as '{copy.name}'.")
        yield LibraryState.load

    @rx.event
    def ask_delete(self, query_id: str, name: str):
        self.delete_id, self.delete_name, self.delete_error = int(query_id), name, ""

    @rx.event
    def cancel_delete(self, _open: bool = False):
        self.delete_id, self.delete_error = 0, ""

    @rx.event(background=True)
    async def confirm_delete(self):
        async with self:
            query_id, actor = self.delete_id, self._actor()
        try:
            await rx.run_in_thread(lambda: library.delete(actor, query_id))
        except UserFacingError as e:
            async with self:
                self.delete_error = e.message
            return
        async with self:
            name, self.delete_id = self.delete_name, 0
            ide = await self.get_state(IdeState)
            if ide.loaded_query_id == query_id:
                ide.mark_saved(0, "", "", "")
        yield rx.toast.success(f"Deleted '{name}'.")
        yield LibraryState.load


# ============================================================================ rendering


def _item(q: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.hstack(
        rx.box(
            rx.text(q["name"], weight="medium", size="2", custom_attrs={"data-testid": "query-library-name"}),
            rx.cond(q["description"] != "", rx.text(q["description"], size="1", color_scheme="gray")),
            rx.text(
                rx.cond(q["provider"] != "", q["provider"] + " · ", ""), q["owner"], " · ",
                rx.el.span(q["updated"], white_space="nowrap"),  # wraps before the date, not inside it
                size="1", color_scheme="gray",
            ),
            on_click=LibraryState.open_query(q["id"]),
            cursor="pointer",
            flex="1",
            min_width="0",
            title="Open in the editor",
            custom_attrs={"data-testid": "query-library-open"},
        ),
        rx.menu.root(
            rx.menu.trigger(rx.icon_button(rx.icon("ellipsis", size=14), variant="ghost", size="1",
                                           custom_attrs={"data-testid": "query-library-menu"})),
            rx.menu.content(
                rx.menu.item("Open", on_click=LibraryState.open_query(q["id"])),
                rx.cond(
                    AppState.can_edit,
                    rx.menu.item("Duplicate", on_click=LibraryState.duplicate(q["id"]),
                                 custom_attrs={"data-testid": "query-library-duplicate"}),
                ),
                rx.cond(
                    AppState.can_edit & (q["mine"] != ""),
                    rx.menu.item("Delete…", color="red", on_click=LibraryState.ask_delete(q["id"], q["name"]),
                                 custom_attrs={"data-testid": "query-library-delete"}),
                ),
            ),
        ),
        padding="0.4rem 0.5rem",
        border_radius="6px",
        width="100%",
        align="start",
        _hover={"background": rx.color("gray", 3)},
        custom_attrs={"data-testid": "query-library-item"},
    )


def query_library() -> rx.Component:
    return rx.vstack(
        rx.input(
            placeholder="Search saved queries",
            value=LibraryState.search,
            on_change=LibraryState.set_search.debounce(250),
            size="1",
            width="100%",
            custom_attrs={"data-testid": "query-library-search"},
        ),
        error_text(LibraryState.library_error, "library-error"),
        rx.cond(
            LibraryState.queries.length() > 0,
            rx.vstack(rx.foreach(LibraryState.queries, _item), width="100%", spacing="1"),
            rx.cond(
                LibraryState.search != "",
                rx.text("No saved query matches.", size="2", color_scheme="gray"),
                empty_state("library", "No saved queries yet", "Write a query and save it to build your library.",
                            "query-library-empty",
                            read_only_hint="Queries editors save appear here; you can run your own meanwhile."),
            ),
        ),
        width="100%",
        custom_attrs={"data-testid": "query-library"},
    )


def _save_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(LibraryState.save_mode == "update", "Update saved query", "Save query")),
            rx.cond(
                IdeState.loaded_query_id > 0,
                rx.segmented_control.root(
                    rx.segmented_control.item("Update in place", value="update"),
                    rx.segmented_control.item("Save as new", value="new"),
                    value=LibraryState.save_mode,
                    on_change=LibraryState.set_save_mode,
                    size="1",
                    margin_bottom="0.75rem",
                    custom_attrs={"data-testid": "save-mode"},
                ),
            ),
            rx.form(
                rx.vstack(
                    rx.text("Name", size="2", weight="medium"),
                    rx.input(name="name", default_value=LibraryState.save_name_default, placeholder="EC2 instances",
                             width="100%", auto_focus=True, custom_attrs={"data-testid": "save-name"}),
                    rx.text("Description", size="2", weight="medium"),
                    rx.text_area(name="description", default_value=LibraryState.save_description_default,
                                 placeholder="What it finds, and for whom", width="100%",
                                 custom_attrs={"data-testid": "save-description"}),
                    rx.text("Provider: ", rx.cond(IdeState.provider != "", IdeState.provider, "none"),
                            size="1", color_scheme="gray"),
                    form_error(LibraryState.save_error),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button(rx.cond(LibraryState.save_mode == "update", "Update", "Save"), type="submit",
                                  custom_attrs={"data-testid": "save-confirm"}),
                        justify="end",
                        width="100%",
                    ),
                    spacing="2",
                    width="100%",
                ),
                on_submit=LibraryState.submit_save,
                reset_on_submit=False,
            ),
            max_width="480px",
        ),
        open=LibraryState.save_open,
        on_open_change=LibraryState.set_save_open,
    )


def _delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete saved query"),
            rx.alert_dialog.description("Delete '", LibraryState.delete_name, "'? This cannot be undone."),
            rx.box(form_error(LibraryState.delete_error), margin_top="0.5rem"),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Keep it", variant="soft", color_scheme="gray")),
                rx.button("Delete", color_scheme="red", on_click=LibraryState.confirm_delete,
                          custom_attrs={"data-testid": "query-library-delete-confirm"}),
                justify="end",
                spacing="2",
                margin_top="1rem",
            ),
        ),
        open=LibraryState.delete_id > 0,
        on_open_change=LibraryState.cancel_delete,
    )


def save_dialogs() -> rx.Component:
    """The save dialog and the delete confirmation (rendered once per page)."""
    return rx.fragment(_save_dialog(), _delete_dialog())
