"""The schema browser: providers → services → resources → columns, loaded lazily from the catalog, searchable;
clicking a resource inserts its name at the cursor, an action inserts a starter SELECT; REGISTRY PULL for the rest."""

from __future__ import annotations

from functools import partial
from typing import Any

import reflex as rx

from stackql_inventory.components.editor import insert_script
from stackql_inventory.services import catalog, ide_queries
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import AppState, current_identity

_ICONS = {"provider": "cloud", "service": "folder", "resource": "table-2", "column": "columns-2"}


def _node(n: ide_queries.SchemaNode, depth: int) -> dict[str, str]:
    return {"path": n.path, "kind": n.kind, "name": n.name, "detail": n.detail, "description": n.description,
            "depth": str(depth), "indent": f"{depth * 14}px", "icon": _ICONS.get(n.kind, "dot"),
            "expandable": "" if n.kind == "column" else "1", "expanded": "", "needs": ""}


class SchemaState(rx.State):
    """The visible rows of the schema tree (flattened), the search, and providers available to pull."""

    # Visible tree rows, in order: path, kind, name, detail, description, depth, indent, icon, expanded…
    rows: list[dict[str, str]] = []
    # Search text and what it found (providers, services and resources already loaded).
    search: str = ""
    hits: list[dict[str, str]] = []
    # Providers in the registry that are not installed (offered with REGISTRY PULL).
    registry: list[dict[str, str]] = []
    # The provider being pulled ('' = none); why loading failed ('' when fine).
    pulling: str = ""
    schema_error: str = ""
    # The path being expanded ('' = none).
    loading_path: str = ""

    # Children per loaded path ('' = the providers) and the expanded paths.
    _children: dict[str, list[dict[str, str]]] = {}
    _expanded: list[str] = []
    # Required parameters per resource path, once expanded.
    _needs: dict[str, str] = {}

    def _rebuild(self) -> None:
        out: list[dict[str, str]] = []

        def walk(path: str) -> None:
            for child in self._children.get(path, []):
                row = dict(child)
                row["expanded"] = "1" if child["path"] in self._expanded else ""
                row["needs"] = self._needs.get(child["path"], "")
                out.append(row)
                if row["expanded"]:
                    walk(child["path"])

        walk("")
        self.rows = out

    @rx.event(background=True)
    async def load(self):
        """Installed providers, then the registry's other providers."""
        try:
            roots = await rx.run_in_thread(partial(ide_queries.schema_children, ""))
        except UserFacingError as e:
            async with self:
                self.schema_error = e.message
            return
        async with self:
            self.schema_error = ""
            self._children = {"": [_node(n, 0) for n in roots]}
            self._expanded = [p for p in self._expanded if p.split(".")[0] in {n.name for n in roots}]
            keep = {""} | set(self._expanded)
            self._children.update({k: v for k, v in list(self._children.items()) if k in keep})
            self._rebuild()
            expanded = list(self._expanded)
        for path in expanded:
            try:
                kids = await rx.run_in_thread(partial(ide_queries.schema_children, path))
            except UserFacingError:
                continue
            async with self:
                self._children[path] = [_node(n, path.count(".") + 1) for n in kids]
                self._rebuild()
        try:
            available = await rx.run_in_thread(ide_queries.registry_providers)
        except UserFacingError:
            available = []
        async with self:
            self.registry = [{"name": n.name, "versions": n.detail} for n in available]

    @rx.event(background=True)
    async def toggle(self, path: str):
        """Expand (loading its children on first use) or collapse a node."""
        async with self:
            if path in self._expanded:
                self._expanded = [p for p in self._expanded if p != path and not p.startswith(path + ".")]
                self._rebuild()
                return
            cached = path in self._children
            self.loading_path = path
        try:
            if not cached:
                kids = await rx.run_in_thread(partial(ide_queries.schema_children, path))
                needs = ""
                if path.count(".") == 2:
                    needs = ", ".join(await rx.run_in_thread(partial(catalog.get_catalog().required_params, path)))
        except UserFacingError as e:
            async with self:
                self.loading_path = ""
            yield rx.toast.error(e.message)
            return
        async with self:
            if not cached:
                self._children[path] = [_node(n, path.count(".") + 1) for n in kids]
                if needs:
                    self._needs[path] = needs
            self._expanded = [*self._expanded, path]
            self.loading_path = ""
            self._rebuild()

    @rx.event
    def insert_name(self, path: str):
        """Insert a resource's (or any node's) full name at the editor's cursor."""
        return insert_script(path)

    @rx.event(background=True)
    async def insert_select(self, path: str):
        """Insert a starter SELECT for a resource: its columns and a WHERE per required parameter."""
        try:
            text = await rx.run_in_thread(partial(ide_queries.starter_select_for, path))
        except UserFacingError as e:
            yield rx.toast.error(e.message)
            return
        yield insert_script(text)

    @rx.event(background=True)
    async def set_search(self, text: str):
        async with self:
            self.search = text
        try:
            found = await rx.run_in_thread(partial(catalog.get_catalog().search, text)) if text.strip() else []
        except UserFacingError as e:
            yield rx.toast.error(e.message)
            return
        async with self:
            if self.search == text:
                self.hits = [{"kind": h.kind, "path": h.name, "description": h.description,
                              "icon": _ICONS.get(h.kind, "dot")} for h in found]

    @rx.event(background=True)
    async def pull(self, provider: str):
        """REGISTRY PULL a provider (editors only), then show it among the installed ones."""
        async with self:
            if self.pulling:
                return
            self.pulling = provider
            who = current_identity(self)
        try:
            message = await rx.run_in_thread(partial(ide_queries.pull_provider, who, provider))
        except UserFacingError as e:
            async with self:
                self.pulling = ""
            yield rx.toast.error(e.message)
            return
        async with self:
            self.pulling = ""
        yield rx.toast.success(message)
        yield SchemaState.load


# ============================================================================ rendering


def _row(r: rx.Var[dict[str, Any]]) -> rx.Component:
    is_resource = r["kind"] == "resource"
    return rx.hstack(
        rx.box(width=r["indent"], flex="none"),
        rx.cond(
            r["expandable"] != "",
            rx.icon_button(
                rx.cond(SchemaState.loading_path == r["path"], rx.spinner(size="1"),
                        rx.cond(r["expanded"] != "", rx.icon("chevron-down", size=14),
                                rx.icon("chevron-right", size=14))),
                on_click=SchemaState.toggle(r["path"]),
                variant="ghost", size="1",
                custom_attrs={"data-testid": "schema-node-toggle"},
            ),
            rx.box(width="24px", flex="none"),
        ),
        rx.icon(r["icon"], size=14, color=rx.color("gray", 10), flex="none"),
        rx.box(
            rx.text(r["name"], size="2", as_="span", weight=rx.cond(is_resource, "medium", "regular")),
            rx.cond(r["detail"] != "", rx.text(" ", r["detail"], size="1", color_scheme="gray", as_="span")),
            rx.cond(r["needs"] != "", rx.text(" · needs ", r["needs"], size="1", color_scheme="amber", as_="span")),
            flex="1",
            min_width="0",
            overflow="hidden",
            text_overflow="ellipsis",
            white_space="nowrap",
            cursor=rx.cond(is_resource, "pointer", "default"),
            title=rx.cond(r["description"] != "", r["description"], r["path"]),
            on_click=rx.cond(is_resource, SchemaState.insert_name(r["path"]), SchemaState.toggle(r["path"])),
            custom_attrs={"data-testid": "schema-node-label"},
        ),
        rx.cond(
            is_resource,
            rx.icon_button(rx.icon("square-code", size=14), variant="ghost", size="1",
                           title="Insert a starter SELECT", on_click=SchemaState.insert_select(r["path"]),
                           custom_attrs={"data-testid": "schema-node-select"}),
        ),
        spacing="1",
        align="center",
        width="100%",
        padding_y="1px",
        _hover={"background": rx.color("gray", 3)},
        border_radius="4px",
        custom_attrs={"data-testid": "schema-node", "data-path": r["path"], "data-kind": r["kind"]},
    )


def _hit(h: rx.Var[dict[str, Any]]) -> rx.Component:
    is_resource = h["kind"] == "resource"
    return rx.hstack(
        rx.icon(h["icon"], size=14, color=rx.color("gray", 10), flex="none"),
        rx.box(
            rx.text(h["path"], size="2"),
            rx.cond(h["description"] != "", rx.text(h["description"], size="1", color_scheme="gray")),
            flex="1",
            min_width="0",
            cursor="pointer",
            on_click=SchemaState.insert_name(h["path"]),
            title="Insert at the cursor",
        ),
        rx.cond(
            is_resource,
            rx.icon_button(rx.icon("square-code", size=14), variant="ghost", size="1",
                           title="Insert a starter SELECT", on_click=SchemaState.insert_select(h["path"])),
        ),
        width="100%",
        align="center",
        spacing="1",
        custom_attrs={"data-testid": "schema-search-hit"},
    )


def schema_browser() -> rx.Component:
    return rx.vstack(
        rx.input(
            placeholder="Search providers, services, resources",
            value=SchemaState.search,
            on_change=SchemaState.set_search.debounce(250),
            size="1",
            width="100%",
            custom_attrs={"data-testid": "schema-search"},
        ),
        rx.cond(SchemaState.schema_error != "",
                rx.text(SchemaState.schema_error, size="1", color_scheme="red",
                        custom_attrs={"data-testid": "schema-error"})),
        rx.cond(
            SchemaState.search != "",
            rx.vstack(
                rx.foreach(SchemaState.hits, _hit),
                rx.cond(SchemaState.hits.length() == 0,
                        rx.text("Nothing loaded matches. Expand a provider to search its resources.", size="1",
                                color_scheme="gray")),
                width="100%",
                spacing="1",
            ),
            rx.vstack(
                rx.foreach(SchemaState.rows, _row),
                rx.cond(SchemaState.rows.length() == 0,
                        rx.text(rx.cond(AppState.can_edit, "No provider installed yet: pull one below.",
                                        "No provider installed yet: an editor can pull one from the registry."),
                                size="1", color_scheme="gray")),
                width="100%",
                spacing="0",
            ),
        ),
        rx.cond(
            SchemaState.registry.length() > 0,
            rx.el.details(
                rx.el.summary(rx.text("Available in the registry (", SchemaState.registry.length(), ")",
                                      size="1", as_="span", color_scheme="gray")),
                rx.vstack(
                    rx.cond(~AppState.can_edit,
                            rx.text("Read-only access: ask an editor to pull a provider.", size="1",
                                    color_scheme="amber", custom_attrs={"data-testid": "schema-pull-readonly"})),
                    rx.foreach(
                        SchemaState.registry,
                        lambda p: rx.hstack(
                            rx.text(p["name"], size="2", flex="1"),
                            rx.button(
                                rx.cond(SchemaState.pulling == p["name"], rx.spinner(size="1"),
                                        rx.icon("download", size=12)),
                                "Pull",
                                size="1", variant="soft",
                                disabled=(SchemaState.pulling != "") | ~AppState.can_edit,
                                on_click=SchemaState.pull(p["name"]),
                                title=rx.cond(AppState.can_edit, "REGISTRY PULL " + p["name"],
                                              "Read-only access: only editors pull providers"),
                                custom_attrs={"data-testid": "schema-pull"},
                            ),
                            width="100%",
                            align="center",
                            custom_attrs={"data-testid": "schema-registry-item"},
                        ),
                    ),
                    width="100%",
                    spacing="1",
                    padding_top="0.25rem",
                ),
                width="100%",
            ),
        ),
        width="100%",
        spacing="2",
        custom_attrs={"data-testid": "schema-browser"},
    )
