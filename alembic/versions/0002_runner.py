"""Runner: index the runs in flight per target (queued/running), for the lock holder and reaping lookups.

Revision ID: 0002_runner
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_runner"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_active_target", "runs", ["target_schema", "target_table"], unique=False, schema="stackql_app",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_active_target", table_name="runs", schema="stackql_app")
