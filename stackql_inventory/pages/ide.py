"""IDE page: the query editor, results and the query library."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.services import library
from stackql_inventory.services.errors import ErrorKind, UserFacingError


class IdeState(rx.State):
    """Editor content, the last result and the query library.

    Contract with the assistant panel (components/chat.py): `sql`, `provider`, `result_id`,
    `result_sql` are read through `get_state(IdeState)`; `insert_sql(text)` puts SQL into the editor.
    """

    # Editor content (lives here so it survives navigation within the session).
    sql: str = ""
    # Provider whose credentials a run uses ('' = none chosen).
    provider: str = ""
    # Id of the last result in the server-side result store ('' = no result).
    result_id: str = ""
    # The statement that produced the last result.
    result_sql: str = ""

    # Saved queries shown in the library panel.
    library: list[dict[str, str]] = []
    # Why the library could not be loaded ('' when fine; database problems go to the banner).
    library_error: str = ""

    @rx.event
    def insert_sql(self, text: str):
        """Put SQL from the assistant into the editor (appended as its own statement)."""
        text = text.strip()
        if not text:
            return
        current = self.sql.rstrip()
        self.sql = f"{current}\n\n{text}\n" if current else f"{text}\n"

    @rx.event(background=True)
    async def load(self):
        """Load the query library."""
        try:
            queries = await rx.run_in_thread(library.list_queries)
        except UserFacingError as e:
            async with self:
                self.library_error = "" if e.kind is ErrorKind.DATABASE else e.message
            return
        async with self:
            self.library_error = ""
            self.library = [
                {
                    "id": str(q.id), "name": q.name, "description": q.description,
                    "provider": q.provider, "updated": formatting.timestamp(q.updated_at),
                }
                for q in queries
            ]


def _library_item(q: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.box(
        rx.text(q["name"], weight="medium", size="2"),
        rx.text(q["description"], size="1", color_scheme="gray"),
        padding="0.5rem",
        border_radius="6px",
        _hover={"background": rx.color("gray", 3)},
        custom_attrs={"data-testid": "query-library-item"},
    )


def query_library() -> rx.Component:
    return rx.vstack(
        rx.heading("Query library", size="3"),
        error_text(IdeState.library_error, "library-error"),
        rx.cond(
            IdeState.library.length() > 0,
            rx.vstack(rx.foreach(IdeState.library, _library_item), width="100%", spacing="1"),
            empty_state("library", "No saved queries yet", "Write a query and save it to build your library.",
                        "query-library-empty"),
        ),
        width="100%",
        custom_attrs={"data-testid": "query-library"},
    )


def page() -> rx.Component:
    return page_frame("ide", "Query IDE", query_library())
