"""Providers page: credential mappings from provider env vars to secrets."""

from __future__ import annotations

import reflex as rx

from stackql_inventory.components.layout import empty_state, error_text, page_frame
from stackql_inventory.services import providers
from stackql_inventory.services.errors import ErrorKind, UserFacingError


class ProvidersState(rx.State):
    """The credential mappings."""

    # One dict per mapping (names only, never values).
    mappings: list[dict[str, str]] = []
    # Why the list could not be loaded ('' when fine).
    load_error: str = ""

    @rx.event(background=True)
    async def load(self):
        """Load every mapping."""
        try:
            items = await rx.run_in_thread(providers.list_mappings)
        except UserFacingError as e:
            async with self:
                self.load_error = "" if e.kind is ErrorKind.DATABASE else e.message
            return
        async with self:
            self.load_error = ""
            self.mappings = [
                {"id": str(m.id), "provider": m.provider, "env_var": m.env_var_name,
                 "scope": m.secret_scope, "key": m.secret_key}
                for m in items
            ]


def _row(m: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(m["provider"]),
        rx.table.cell(rx.code(m["env_var"])),
        rx.table.cell(m["scope"]),
        rx.table.cell(m["key"]),
        custom_attrs={"data-testid": "provider-row"},
    )


def page() -> rx.Component:
    return page_frame(
        "providers",
        "Providers",
        error_text(ProvidersState.load_error),
        rx.cond(
            ProvidersState.mappings.length() > 0,
            rx.table.root(
                rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in
                                               ("Provider", "Variable", "Secret scope", "Secret key")])),
                rx.table.body(rx.foreach(ProvidersState.mappings, _row)),
                width="100%",
            ),
            empty_state("key-round", "No provider credentials mapped yet",
                        "Map each provider's credential variables to secrets to query it.", "providers-empty"),
        ),
    )
