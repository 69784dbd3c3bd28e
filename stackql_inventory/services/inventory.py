"""Inventory tables: what the schedules have collected into `stackql_inventory`."""

from __future__ import annotations

from dataclasses import dataclass

from stackql_inventory.db import inventory_catalog
from stackql_inventory.db.engine import session_scope


@dataclass(frozen=True)
class InventoryTable:
    """One table or materialized view of the inventory schema."""

    name: str
    kind: str              # "table" | "materialized view"
    estimated_rows: int    # the planner's estimate (-1: never analysed)
    size_bytes: int
    comment: str


def list_tables() -> list[InventoryTable]:
    """Tables and materialized views of `stackql_inventory`."""
    with session_scope() as s:
        return [
            InventoryTable(
                name=r.name, kind="materialized view" if r.kind == "m" else "table",
                estimated_rows=int(r.estimated_rows), size_bytes=int(r.size_bytes), comment=r.comment or "",
            )
            for r in inventory_catalog.list_relations(s)
        ]
