"""Page frame: header with navigation and user, the database banner, and the page body."""

from __future__ import annotations

import reflex as rx

from stackql_inventory import routes
from stackql_inventory.state.app_state import AppState

NAV_ITEMS = (
    ("ide", "IDE", routes.IDE, "code"),
    ("schedules", "Schedules", routes.SCHEDULES, "calendar-clock"),
    ("inventory", "Inventory", routes.INVENTORY, "database"),
    ("providers", "Providers", routes.PROVIDERS, "key-round"),
)


def _nav_link(key: str, label: str, href: str, icon: str, active: str) -> rx.Component:
    is_active = key == active
    return rx.link(
        rx.hstack(rx.icon(icon, size=16), rx.text(label, size="2", weight="medium"), spacing="2", align="center"),
        href=href,
        underline="none",
        color_scheme="gray" if not is_active else "indigo",
        high_contrast=is_active,
        padding_x="0.75rem",
        padding_y="0.4rem",
        border_radius="6px",
        background=rx.cond(is_active, rx.color("indigo", 3), "transparent"),
        custom_attrs={"data-testid": f"nav-{key}"},
    )


def header(active: str) -> rx.Component:
    return rx.hstack(
        rx.hstack(
            rx.icon("boxes", size=22, color=rx.color("indigo", 9)),
            rx.heading("StackQL Cloud Inventory", size="4", weight="bold"),
            align="center",
            spacing="2",
        ),
        rx.hstack(*[_nav_link(*item, active=active) for item in NAV_ITEMS], spacing="1", margin_left="2rem"),
        rx.spacer(),
        rx.cond(
            ~AppState.can_edit,
            rx.badge("read-only", color_scheme="amber", variant="soft", custom_attrs={"data-testid": "header-readonly"}),
        ),
        rx.hstack(
            rx.icon("circle-user-round", size=18),
            rx.text(AppState.user_name, size="2", custom_attrs={"data-testid": "header-user"}),
            align="center",
            spacing="1",
        ),
        width="100%",
        align="center",
        padding_x="1.25rem",
        padding_y="0.6rem",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
    )


def db_banner() -> rx.Component:
    return rx.cond(
        AppState.db_error != "",
        rx.callout(
            AppState.db_error,
            icon="triangle-alert",
            color_scheme="red",
            role="alert",
            width="100%",
            custom_attrs={"data-testid": "db-banner"},
        ),
    )


def page_frame(active: str, title: str, *children: rx.Component, actions: rx.Component | None = None) -> rx.Component:
    """The standard page: header, banner, then a titled body."""
    return rx.vstack(
        header(active),
        rx.vstack(
            db_banner(),
            rx.hstack(
                rx.heading(title, size="6", custom_attrs={"data-testid": "page-heading"}),
                rx.spacer(),
                actions or rx.fragment(),
                width="100%",
                align="center",
            ),
            *children,
            width="100%",
            padding="1.25rem",
            spacing="4",
        ),
        spacing="0",
        width="100%",
        min_height="100vh",
    )


def empty_state(icon: str, title: str, hint: str, testid: str, *, read_only_hint: str | None = None
                ) -> rx.Component:
    """A friendly placeholder for an empty list.

    While the database is unreachable a list is unknown, not empty: the placeholder says so instead of
    inviting the user to create a first item (the banner above says what is wrong). `read_only_hint`
    replaces `hint` for users who cannot create items (not editors), so they are not asked to.
    """
    return rx.center(
        rx.cond(
            AppState.db_error != "",
            rx.vstack(
                rx.icon("database-zap", size=32, color=rx.color("gray", 8)),
                rx.text("Not available while the database is unreachable", weight="medium"),
                rx.text("This list loads again once the database answers.", size="2", color_scheme="gray"),
                align="center",
                spacing="2",
                custom_attrs={"data-testid": "db-unavailable"},
            ),
            rx.vstack(
                rx.icon(icon, size=32, color=rx.color("gray", 8)),
                rx.text(title, weight="medium"),
                rx.text(hint if read_only_hint is None else rx.cond(AppState.can_edit, hint, read_only_hint),
                        size="2", color_scheme="gray", text_align="center"),
                align="center",
                spacing="2",
            ),
        ),
        width="100%",
        padding="2.5rem",
        border=f"1px dashed {rx.color('gray', 6)}",
        border_radius="8px",
        custom_attrs={"data-testid": testid},
    )


def error_text(message: rx.Var, testid: str = "page-error", *, size: str = "2") -> rx.Component:
    """The one way to show an error beside its cause: a red callout, shown while `message` is not ''."""
    return rx.cond(
        message != "",
        rx.callout(message, icon="circle-alert", color_scheme="red", size=size, width="100%",
                   custom_attrs={"data-testid": testid}),
    )


def form_error(message: rx.Var) -> rx.Component:
    """Why a dialog's form was refused (`form-error`, as every dialog names it); nothing was saved then."""
    return error_text(message, "form-error", size="1")


def notice_text(message: rx.Var, testid: str) -> rx.Component:
    """What the last action did: a green callout, shown while `message` is not ''."""
    return rx.cond(
        message != "",
        rx.callout(message, icon="circle-check", color_scheme="green", size="1", width="100%",
                   custom_attrs={"data-testid": testid}),
    )
