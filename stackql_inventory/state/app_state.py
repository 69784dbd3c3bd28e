"""App-wide state: who the user is and whether the database answers."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.services import health, identity
from stackql_inventory.services.errors import ErrorKind, UserFacingError


def current_identity(state: rx.State) -> identity.Identity:
    """The identity behind the event being handled (proxy headers of this session's websocket)."""
    return identity.from_headers(dict(state.router.headers.raw_headers))


class AppState(rx.State):
    """Identity and the database banner, shared by every page."""

    # Display name of the signed-in user (header).
    user_name: str = ""
    # Stable user id recorded as created_by.
    user_id: str = ""
    # Whether the user may create and change things (editor role); pages hide write controls otherwise.
    can_edit: bool = True
    # Why the database cannot be used ('' when it answers).
    db_error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Identify the user and check the database, both off the event loop (group lookups use SCIM)."""
        async with self:
            who = current_identity(self)
            self.user_name, self.user_id = who.display_name, who.user
        editor = await rx.run_in_thread(lambda: identity.can_edit(who))
        problem = await rx.run_in_thread(health.database_problem)
        async with self:
            self.can_edit = editor
            self.db_error = problem


async def list_error(state: rx.State, error: UserFacingError) -> str:
    """What a background handler shows when its list could not be loaded (the one way, on every page).

    A database problem goes to the page's banner (`AppState.db_error`: the database may have gone away after
    the page loaded) and the list itself shows no error of its own; any other problem is the list's to show.
    Call it outside `async with state` (it takes the lock).
    """
    if error.kind is not ErrorKind.DATABASE:
        return error.message
    async with state:
        (await state.get_state(AppState)).db_error = error.message
    return ""
