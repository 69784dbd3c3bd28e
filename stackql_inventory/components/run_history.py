"""The history panel: the user's recent IDE runs (status, rows, elapsed), each reopened with a click."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import formatting
from stackql_inventory.pages.ide import IdeState
from stackql_inventory.services import history
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import current_identity, list_error

_STATUS_COLORS = {"success": "green", "error": "red", "cancelled": "gray"}


class HistoryState(rx.State):
    """The signed-in user's recent runs."""

    # Runs shown, newest first.
    entries: list[dict[str, str]] = []
    # Why the history could not be loaded ('' when fine; database problems go to the banner).
    history_error: str = ""

    @rx.event(background=True)
    async def load(self):
        async with self:
            user = current_identity(self).user
        try:
            found = await rx.run_in_thread(lambda: history.recent(user, limit=100))
        except UserFacingError as e:
            problem = await list_error(self, e)
            async with self:
                self.history_error = problem
            return
        async with self:
            self.history_error = ""
            self.entries = [
                {
                    "id": str(h.id), "text": h.query_text, "preview": " ".join(h.query_text.split())[:160],
                    "provider": h.provider, "status": h.status, "color": _STATUS_COLORS.get(h.status, "gray"),
                    "rows": "" if h.row_count is None else
                    f"{formatting.count(h.row_count)} row{'' if h.row_count == 1 else 's'} · ",
                    "elapsed": formatting.duration(h.elapsed_s), "when": formatting.timestamp(h.started_at),
                    "error": h.error_message,
                }
                for h in found
            ]

    @rx.event(background=True)
    async def reopen(self, history_id: str):
        """Put a past run's text (and provider) back into the editor."""
        async with self:
            user = current_identity(self).user
        try:
            entry = await rx.run_in_thread(lambda: history.get(user, int(history_id)))
        except (UserFacingError, ValueError) as e:
            yield rx.toast.error(e.message if isinstance(e, UserFacingError) else "That run id is not valid.")
            return
        async with self:
            ide = await self.get_state(IdeState)
            ide.load_text(entry.query_text, entry.provider)


def _entry(h: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.badge(h["status"], color_scheme=h["color"].to(str), variant="soft", size="1",
                     custom_attrs={"data-testid": "ide-history-status"}),
            rx.text(h["rows"], h["elapsed"], size="1", color_scheme="gray", white_space="nowrap"),
            rx.spacer(),
            rx.cond(h["provider"] != "", rx.text(h["provider"], size="1", color_scheme="gray")),
            width="100%",
            align="center",
            spacing="2",
        ),
        rx.text(h["when"], size="1", color_scheme="gray"),
        rx.text(h["preview"], size="1", font_family="var(--code-font-family, monospace)", trim="both",
                style={"overflow": "hidden", "text_overflow": "ellipsis", "white_space": "nowrap"}),
        rx.cond(h["error"] != "", rx.text(h["error"], size="1", color_scheme="red", trim="both",
                                          style={"overflow": "hidden", "text_overflow": "ellipsis",
                                                 "white_space": "nowrap"})),
        on_click=HistoryState.reopen(h["id"]),
        cursor="pointer",
        padding="0.4rem 0.5rem",
        border_radius="6px",
        width="100%",
        title="Open in the editor",
        _hover={"background": rx.color("gray", 3)},
        custom_attrs={"data-testid": "ide-history-item"},
    )


def history_panel() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text("Your recent runs", size="2", weight="medium"),
            rx.spacer(),
            rx.icon_button(rx.icon("refresh-cw", size=14), variant="ghost", size="1", on_click=HistoryState.load,
                           title="Refresh"),
            width="100%",
            align="center",
        ),
        rx.cond(HistoryState.history_error != "", rx.text(HistoryState.history_error, size="1", color_scheme="red")),
        rx.cond(
            HistoryState.entries.length() > 0,
            rx.vstack(rx.foreach(HistoryState.entries, _entry), width="100%", spacing="1"),
            rx.text("Runs you make appear here.", size="2", color_scheme="gray"),
        ),
        width="100%",
        custom_attrs={"data-testid": "ide-history"},
    )
