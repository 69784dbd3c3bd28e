"""The assistant panel beside the editor (Claude), and the IDE's Explain / Interpret actions.

Placement contract with the IDE page: `chat_panel()` is the right-hand column, `chat_actions()`
sits in the results toolbar. The panel itself is built in the AI assistant issue.
"""

from __future__ import annotations

import reflex as rx


class ChatState(rx.State):
    """The conversation of this browser session."""

    # Messages shown in the panel.
    messages: list[dict[str, str]] = []


def chat_actions() -> rx.Component:
    """Explain / Interpret buttons for the IDE toolbar (filled in by the assistant issue)."""
    return rx.fragment()


def chat_panel() -> rx.Component:
    """The assistant column (filled in by the assistant issue)."""
    return rx.box(custom_attrs={"data-testid": "chat-panel"})
