"""Runs ledger: index by target table, for the inventory browser's last-run and last-success lookups.

Revision ID: 0004_inventory
Revises: 0003_scheduling
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_inventory"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_target_started", "runs",
        ["target_schema", "target_table", sa.literal_column("started_at DESC")],
        unique=False, schema="stackql_app",
    )


def downgrade() -> None:
    op.drop_index("ix_runs_target_started", table_name="runs", schema="stackql_app")
