"""The assistant panel beside the editor (Claude), and the IDE's Explain / Interpret actions.

Placement contract with the IDE page: `chat_panel()` is the right-hand column, `chat_actions()`
sits in the results toolbar. The state lives in chat_state.py.
"""

from __future__ import annotations

import reflex as rx

from stackql_inventory.components.chat_state import INPUT_ID, ChatState
from stackql_inventory.services.assistant import ChatItem, Segment

__all__ = ["ChatState", "chat_actions", "chat_panel"]

SCROLL_ID = "chat-scroll"
WRITE_EXAMPLES = (
    "List my EC2 instances in us-east-1 with their type and state",
    "Which Google Compute instances in project my-project are not running?",
    "Show the public repositories of my GitHub organisation",
)

# Keeps the conversation scrolled to its newest message while the user is at the bottom; once they
# scroll up to read, new tokens no longer pull the view down. window.__chatPin() jumps back (on send).
_AUTOSCROLL_JS = f"""
(() => {{
  const el = document.getElementById("{SCROLL_ID}");
  if (!el || el.dataset.autoscroll) return;
  el.dataset.autoscroll = "1";
  let pinned = true;
  const toBottom = () => {{ el.scrollTop = el.scrollHeight; }};
  el.addEventListener("scroll", () => {{
    pinned = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  }}, {{ passive: true }});
  new MutationObserver(() => {{ if (pinned) toBottom(); }})
    .observe(el, {{ childList: true, subtree: true, characterData: true }});
  window.__chatPin = () => {{ pinned = true; toBottom(); requestAnimationFrame(toBottom); }};
  toBottom();
}})()
"""


# --- markdown -------------------------------------------------------------------------------------
def _md_text(text: rx.Var) -> rx.Component:
    return rx.text(text, size="2", as_="p", margin_y="0.4em")


def _md_heading(text: rx.Var) -> rx.Component:
    return rx.heading(text, size="2", weight="bold", margin_top="0.8em", margin_bottom="0.3em")


def _md_image(*_children, **_props) -> rx.Component:
    # Answers may echo cloud data; an image URL would leak it to whoever serves the image.
    return rx.text.span("[image not shown]", color=rx.color("gray", 10))


def _md_list(tag: str, marker: str):
    def make(text: rx.Var) -> rx.Component:
        return getattr(rx.el, tag)(text, padding_left="1.3em", margin_y="0.4em", list_style_type=marker)
    return make


def _md_item(text: rx.Var) -> rx.Component:
    return rx.el.li(text, font_size="var(--font-size-2)", line_height="var(--line-height-2)", margin_y="0.15em")


def _md_table(text: rx.Var) -> rx.Component:
    return rx.el.table(text, border_collapse="collapse", font_size="12px", margin_y="0.5em")


def _md_cell(tag: str):
    def make(text: rx.Var) -> rx.Component:
        return getattr(rx.el, tag)(text, border=f"1px solid {rx.color('gray', 6)}", padding="2px 8px",
                                   text_align="left", font_weight="600" if tag == "th" else "400")
    return make


def _md_code_block(value: rx.Var, **props) -> rx.Component:
    # Fences other than the answer's SQL blocks (and any SQL in the user's own messages).
    return rx.code_block(value, wrap_long_lines=True, font_size="12px", margin_y="0.5em",
                         custom_style={"fontSize": "12px", "padding": "0.6rem 0.75rem"}, **props)


_MD_MAP = {"table": _md_table, "th": _md_cell("th"), "td": _md_cell("td"), "pre": _md_code_block,
           "p": _md_text, "h1": _md_heading, "h2": _md_heading, "h3": _md_heading, "h4": _md_heading,
           "ul": _md_list("ul", "disc"), "ol": _md_list("ol", "decimal"), "li": _md_item, "img": _md_image}


def markdown(text: rx.Var) -> rx.Component:
    """Markdown without raw HTML, math or images (answers can carry text from cloud APIs)."""
    return rx.markdown(text, use_raw=False, use_math=False, use_katex=False, component_map=_MD_MAP,
                       class_name="chat-markdown", width="100%")


# --- messages -------------------------------------------------------------------------------------
def _sql_segment(segment: rx.Var[Segment], streaming: bool) -> rx.Component:
    from stackql_inventory.pages.ide import IdeState

    actions = rx.hstack(
        rx.button(rx.icon("corner-down-left", size=14), "Insert into editor", size="1", variant="soft",
                  on_click=IdeState.insert_sql(segment.text), custom_attrs={"data-testid": "chat-insert-sql"}),
        rx.tooltip(
            rx.icon_button(rx.icon("copy", size=14), size="1", variant="ghost", color_scheme="gray",
                           on_click=[rx.set_clipboard(segment.text), rx.toast.info("SQL copied", duration=1500)],
                           custom_attrs={"data-testid": "chat-copy-sql", "aria-label": "Copy SQL"}),
            content="Copy",
        ),
        spacing="2", align="center", padding_x="0.5rem", padding_bottom="0.4rem",
    )
    return rx.box(
        # Not wrapped: in the narrow column wrapping broke indented lines apart; long lines scroll instead.
        rx.code_block(segment.text, language="sql", wrap_long_lines=False, font_size="12px",
                      custom_style={"margin": "0", "background": "transparent", "padding": "0.6rem 0.75rem",
                                    "overflowX": "auto"}),
        rx.cond(segment.closed, actions) if streaming else actions,
        width="100%",
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="8px",
        background=rx.color("gray", 1),
        margin_y="0.4rem",
        overflow="hidden",
        custom_attrs={"data-testid": "chat-sql-block"},
    )


def _segment(segment: rx.Var[Segment], streaming: bool = False) -> rx.Component:
    return rx.cond(segment.kind == "sql", _sql_segment(segment, streaming), markdown(segment.text))


def _answer_footer(item: rx.Var[ChatItem]) -> rx.Component:
    return rx.fragment(
        rx.cond(
            item.notes.length() > 0,
            rx.callout.root(
                rx.callout.icon(rx.icon("triangle-alert", size=16)),
                rx.vstack(
                    rx.text("Checked against the catalog", size="1", weight="bold"),
                    rx.foreach(item.notes, lambda note: rx.text(note, size="1")),
                    spacing="1",
                ),
                color_scheme="amber", size="1", variant="surface", width="100%", margin_top="0.4rem",
                custom_attrs={"data-testid": "chat-notes"},
            ),
        ),
        rx.cond(
            item.state_text != "",
            rx.text(item.state_text, size="1", color=rx.cond(item.state == "done", rx.color("gray", 10),
                                                             rx.color("amber", 11)),
                    font_style="italic", margin_top="0.3rem", custom_attrs={"data-testid": "chat-state"}),
        ),
        rx.cond(
            item.usage != "",
            rx.text(item.usage, size="1", color=rx.color("gray", 9), align="right", width="100%",
                    margin_top="0.2rem", custom_attrs={"data-testid": "chat-usage"}),
        ),
    )


def _label(item: rx.Var[ChatItem]) -> rx.Component:
    return rx.cond(
        item.label != "",
        rx.text(item.label, size="1", weight="bold", color=rx.color("indigo", 11), margin_bottom="0.2rem"),
    )


def _user_bubble(item: rx.Var[ChatItem]) -> rx.Component:
    return rx.box(
        _label(item),
        markdown(item.text),
        max_width="92%",
        margin_left="auto",
        padding_x="0.8rem",
        padding_y="0.3rem",
        border_radius="12px 12px 4px 12px",
        background=rx.color("indigo", 3),
        overflow_x="auto",
        custom_attrs={"data-testid": "chat-message", "data-role": "user", "data-mode": item.mode},
    )


def _assistant_bubble(item: rx.Var[ChatItem], streaming: bool = False) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.icon("sparkles", size=14, color=rx.color("violet", 10)),
            rx.text("Claude", size="1", weight="bold", color=rx.color("gray", 11)),
            rx.cond(item.mode == "interpret", rx.badge("interpret", size="1", variant="soft", color_scheme="gray")),
            spacing="1", align="center", margin_bottom="0.1rem",
        ),
        rx.foreach(item.segments, lambda s: _segment(s, streaming)),
        _answer_footer(item),
        width="100%",
        padding_x="0.8rem",
        padding_y="0.5rem",
        border_radius="12px 12px 12px 4px",
        background=rx.color("gray", 2),
        border=f"1px solid {rx.color('gray', 4)}",
        overflow_x="auto",
        custom_attrs={"data-testid": "chat-message", "data-role": "assistant", "data-state": item.state},
    )


def _message(item: rx.Var[ChatItem]) -> rx.Component:
    return rx.cond(item.role == "user", _user_bubble(item), _assistant_bubble(item))


def _live_answer() -> rx.Component:
    return rx.cond(
        ChatState.streaming,
        rx.fragment(
            rx.cond(ChatState.live.segments.length() > 0, _assistant_bubble(ChatState.live, streaming=True)),
            rx.cond(
                ChatState.status != "",
                rx.hstack(rx.spinner(size="1"), rx.text(ChatState.status, size="1", color=rx.color("gray", 10)),
                          spacing="2", align="center", padding_x="0.3rem",
                          custom_attrs={"data-testid": "chat-status"}),
            ),
        ),
    )


def _example(question: str) -> rx.Component:
    return rx.button(
        rx.icon("message-circle-question", size=14), rx.text(question, size="1", align="left"),
        variant="surface", color_scheme="gray", size="1", height="auto", padding_y="0.4rem",
        justify="start", width="100%", white_space="normal",
        on_click=[rx.set_value(INPUT_ID, question), rx.set_focus(INPUT_ID)],
        custom_attrs={"data-testid": "chat-example"},
    )


def _empty() -> rx.Component:
    return rx.vstack(
        rx.icon("sparkles", size=28, color=rx.color("violet", 9)),
        rx.cond(
            ChatState.mode == "write",
            rx.vstack(
                rx.text("Ask for a query", size="3", weight="bold"),
                rx.text("Describe what you want to see. Claude writes StackQL using the installed providers' "
                        "resources and their required parameters; insert it into the editor and run it.",
                        size="2", color=rx.color("gray", 11), align="center"),
                rx.vstack(*[_example(q) for q in WRITE_EXAMPLES], spacing="2", width="100%", margin_top="0.5rem"),
                align="center", spacing="2", width="100%",
            ),
            rx.vstack(
                rx.text("Interpret a result", size="3", weight="bold"),
                rx.text("Run a query, then press Interpret in the results toolbar, or ask a question here: "
                        "the last result goes along as a table.",
                        size="2", color=rx.color("gray", 11), align="center"),
                align="center", spacing="2", width="100%",
            ),
        ),
        align="center",
        spacing="2",
        padding="1.5rem 0.75rem",
        margin_y="auto",
        width="100%",
        custom_attrs={"data-testid": "chat-empty"},
    )


def _error() -> rx.Component:
    return rx.cond(
        ChatState.error != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("circle-alert", size=16)),
            rx.vstack(
                rx.text(ChatState.error, size="2", custom_attrs={"data-testid": "chat-error-message"}),
                rx.cond(
                    ChatState.retry_after != "",
                    rx.text("Anthropic asked to wait ", ChatState.retry_after, " s before retrying.", size="1",
                            custom_attrs={"data-testid": "chat-retry-after"}),
                ),
                rx.hstack(
                    rx.cond(
                        ChatState.can_retry,
                        rx.button(rx.icon("rotate-cw", size=14), "Retry", size="1", variant="soft", color_scheme="red",
                                  on_click=ChatState.retry, custom_attrs={"data-testid": "chat-retry"}),
                    ),
                    rx.button("Dismiss", size="1", variant="ghost", color_scheme="gray",
                              on_click=ChatState.dismiss_error, custom_attrs={"data-testid": "chat-dismiss-error"}),
                    spacing="3", align="center",
                ),
                spacing="2",
            ),
            color_scheme="red", size="1", role="alert", width="100%",
            custom_attrs={"data-testid": "chat-error"},
        ),
    )


def _mode_button(mode: str, label: str, icon: str) -> rx.Component:
    active = ChatState.mode == mode
    return rx.button(
        rx.icon(icon, size=14), label,
        size="1",
        variant=rx.cond(active, "surface", "soft"),
        color_scheme=rx.cond(active, "indigo", "gray"),
        background=rx.cond(active, rx.color("gray", 1), "transparent"),
        cursor="pointer",
        on_click=ChatState.set_mode(mode),
        custom_attrs={"data-testid": f"chat-mode-{mode}", "aria-pressed": rx.cond(active, "true", "false")},
    )


def _header() -> rx.Component:
    return rx.hstack(
        rx.hstack(
            _mode_button("write", "Write query", "pencil-line"),
            _mode_button("interpret", "Interpret results", "chart-column"),
            spacing="1", padding="3px", border_radius="8px", background=rx.color("gray", 3),
        ),
        rx.spacer(),
        rx.tooltip(
            rx.icon_button(rx.icon("message-square-plus", size=16), size="1", variant="ghost", color_scheme="gray",
                           on_click=ChatState.clear, disabled=(ChatState.messages.length() == 0) & ~ChatState.streaming,
                           custom_attrs={"data-testid": "chat-clear", "aria-label": "New conversation"}),
            content="New conversation",
        ),
        width="100%",
        align="center",
        padding="0.6rem 0.75rem",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def _composer() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text_area(
                id=INPUT_ID,
                name="question",
                placeholder=rx.cond(ChatState.mode == "write", "Ask for a StackQL query…",
                                    "Ask about the last result…"),
                enter_key_submit=True,
                rows="3",
                resize="vertical",
                size="2",
                width="100%",
                custom_attrs={"data-testid": "chat-input"},
            ),
            rx.hstack(
                rx.text("Shift+Enter for a new line", size="1", color=rx.color("gray", 9)),
                rx.spacer(),
                rx.cond(
                    ChatState.streaming,
                    rx.button(rx.icon("square", size=12), "Stop", type="button", size="1", color_scheme="red",
                              variant="soft", on_click=ChatState.stop, custom_attrs={"data-testid": "chat-stop"}),
                    rx.button(rx.icon("send-horizontal", size=14), "Send", type="submit", size="1",
                              custom_attrs={"data-testid": "chat-send"}),
                ),
                width="100%",
                align="center",
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=False,
        width="100%",
        padding="0.6rem 0.75rem 0.75rem",
        border_top=f"1px solid {rx.color('gray', 4)}",
    )


def chat_panel() -> rx.Component:
    """The assistant column: mode switch, the conversation, errors, and the question box."""
    return rx.vstack(
        _header(),
        rx.box(
            rx.cond(
                (ChatState.messages.length() == 0) & ~ChatState.streaming,
                _empty(),
                rx.vstack(rx.foreach(ChatState.messages, _message), _live_answer(), spacing="3", width="100%"),
            ),
            id=SCROLL_ID,
            flex="1",
            min_height="0",
            width="100%",
            overflow_y="auto",
            padding="0.75rem",
            display="flex",
            flex_direction="column",
            on_mount=rx.call_script(_AUTOSCROLL_JS),
            custom_attrs={"data-testid": "chat-messages"},
        ),
        rx.box(_error(), width="100%", padding_x="0.75rem"),
        _composer(),
        spacing="0",
        # As tall as the IDE's side panels: the conversation scrolls inside, the question box stays in view.
        height="calc(100vh - 150px)",
        min_height="420px",
        width="100%",
        background=rx.color("gray", 1),
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="10px",
        overflow="hidden",
        custom_attrs={"data-testid": "chat-panel"},
    )


def chat_actions() -> rx.Component:
    """Explain / Interpret buttons for the IDE's results toolbar: they post a prepared prompt to the chat."""
    from stackql_inventory.pages.ide import IdeState

    return rx.hstack(
        rx.button(rx.icon("message-square-text", size=14), "Explain", size="1", variant="soft", color_scheme="violet",
                  on_click=ChatState.explain, disabled=ChatState.streaming,
                  custom_attrs={"data-testid": "ide-explain"}),
        rx.button(rx.icon("sparkles", size=14), "Interpret", size="1", variant="soft", color_scheme="violet",
                  on_click=ChatState.interpret, disabled=ChatState.streaming | (IdeState.result_id == ""),
                  custom_attrs={"data-testid": "ide-interpret"}),
        spacing="2",
    )
