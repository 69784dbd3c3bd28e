"""SQL over the PostgreSQL catalog describing the `stackql_inventory` schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from stackql_inventory.db.models import INVENTORY_SCHEMA

# Tables (r, p) and materialized views (m) with the planner's row estimate and size on disk.
_LIST_SQL = sa.text(
    """
    SELECT c.relname AS name,
           c.relkind AS kind,
           c.reltuples::bigint AS estimated_rows,
           pg_total_relation_size(c.oid) AS size_bytes,
           obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'm')
    ORDER BY c.relname
    """
)


def list_relations(session: Session) -> list[sa.Row]:
    """Tables and materialized views of the inventory schema (names, kinds, estimates, sizes)."""
    return list(session.execute(_LIST_SQL, {"schema": INVENTORY_SCHEMA}))
