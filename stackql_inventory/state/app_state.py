"""App-wide state: who the user is and whether the database answers."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.services import health, identity


class AppState(rx.State):
    """Identity and the database banner, shared by every page."""

    # Display name of the signed-in user (header).
    user_name: str = ""
    # Stable user id recorded as created_by.
    user_id: str = ""
    # Whether the user may create and change things (editor role).
    can_edit: bool = True
    # Why the database cannot be used ('' when it answers).
    db_error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Identify the user from proxy headers and check the database (off the event loop)."""
        async with self:
            who = identity.from_headers(dict(self.router.headers.raw_headers))
            self.user_name, self.user_id = who.display_name, who.user
            self.can_edit = identity.can_edit(who)
        problem = await rx.run_in_thread(health.database_problem)
        async with self:
            self.db_error = problem
