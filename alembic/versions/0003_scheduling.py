"""Scheduling: the slot each run was fired for (unique per schedule) and an index of runs in flight.

Revision ID: 0003_scheduling
Revises: 0002_runner
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_scheduling"
down_revision = "0002_runner"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True), schema="stackql_app")
    op.create_index(
        "uq_runs_schedule_slot", "runs", ["schedule_id", "scheduled_for"], unique=True, schema="stackql_app",
        postgresql_where=sa.text("scheduled_for IS NOT NULL"),
    )
    op.create_index(
        "ix_runs_in_flight", "runs", ["schedule_id"], unique=False, schema="stackql_app",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_in_flight", table_name="runs", schema="stackql_app")
    op.drop_index("uq_runs_schedule_slot", table_name="runs", schema="stackql_app")
    op.drop_column("runs", "scheduled_for", schema="stackql_app")
