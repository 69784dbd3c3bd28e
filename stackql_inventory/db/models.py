"""SQLModel tables of the `stackql_app` schema (app metadata, never federated to analysts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

APP_SCHEMA = "stackql_app"
INVENTORY_SCHEMA = "stackql_inventory"

WRITE_MODES = ("replace", "append", "history")
RUN_STATUSES = ("queued", "running", "success", "failed", "skipped", "cancelled")
RUN_TRIGGERS = ("schedule", "manual", "catchup", "adhoc")


def _ts(*, nullable: bool = True, default_now: bool = False) -> Any:
    return sa.Column(
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default_now else None,
    )


class SavedQuery(SQLModel, table=True):
    """A saved StackQL query (the schedulable unit)."""

    __tablename__ = "queries"
    __table_args__ = (
        sa.UniqueConstraint("created_by", "name", name="uq_queries_owner_name"),
        {"schema": APP_SCHEMA},
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    query_text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    provider: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_by: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))


class Schedule(SQLModel, table=True):
    """A saved query run on a cron into an inventory table."""

    __tablename__ = "schedules"
    __table_args__ = (
        sa.UniqueConstraint("target_schema", "target_table", name="uq_schedules_target"),
        sa.CheckConstraint(f"write_mode IN {WRITE_MODES}", name="ck_schedules_write_mode"),
        # The local scheduler's "what is due next" lookup.
        sa.Index("ix_schedules_due", "next_run_at", postgresql_where=sa.text("is_active")),
        {"schema": APP_SCHEMA},
    )

    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey(f"{APP_SCHEMA}.queries.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    job_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    cron_expression: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    timezone: str = Field(default="UTC", sa_column=sa.Column(sa.Text, nullable=False, server_default="UTC"))
    target_schema: str = Field(
        default=INVENTORY_SCHEMA, sa_column=sa.Column(sa.Text, nullable=False, server_default=INVENTORY_SCHEMA)
    )
    target_table: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    write_mode: str = Field(default="replace", sa_column=sa.Column(sa.Text, nullable=False, server_default="replace"))
    # Columns identifying one resource, for `history` mode (empty: a hash of the whole row).
    key_columns: list[str] = Field(
        default_factory=list, sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}")
    )
    is_active: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.true()))
    next_run_at: datetime | None = Field(default=None, sa_column=_ts())
    last_run_at: datetime | None = Field(default=None, sa_column=_ts())
    last_run_status: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Consecutive failed runs, for the scheduler's backoff.
    consecutive_failures: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    created_by: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    created_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))


class ProviderConfig(SQLModel, table=True):
    """Maps a provider's credential env var to a secret (scope/key); never holds the value."""

    __tablename__ = "provider_config"
    __table_args__ = (
        sa.UniqueConstraint("provider", "env_var_name", name="uq_provider_config_var"),
        {"schema": APP_SCHEMA},
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    env_var_name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    secret_scope: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    secret_key: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_by: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    created_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))


class Run(SQLModel, table=True):
    """One execution of the runner (scheduled, manual or one-off): the run ledger."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint(f"status IN {RUN_STATUSES}", name="ck_runs_status"),
        sa.Index("ix_runs_schedule_started", "schedule_id", sa.text("started_at DESC")),
        sa.Index("ix_runs_started", sa.text("started_at DESC")),
        # The inventory browser's "last run / last success of this table" lookups (tables written by
        # one-off runs have no schedule, so the schedule index cannot serve them).
        sa.Index("ix_runs_target_started", "target_schema", "target_table", sa.text("started_at DESC")),
        # The runner's "who is on this target" and the scheduler's "what is in flight" lookups.
        sa.Index("ix_runs_active_target", "target_schema", "target_table",
                 postgresql_where=sa.text("status IN ('queued', 'running')")),
        # At most one run per schedule slot, however many schedulers share the database.
        sa.Index("uq_runs_schedule_slot", "schedule_id", "scheduled_for", unique=True,
                 postgresql_where=sa.text("scheduled_for IS NOT NULL")),
        # The scheduler's "what is in flight" lookups.
        sa.Index("ix_runs_in_flight", "schedule_id", postgresql_where=sa.text("status IN ('queued', 'running')")),
        {"schema": APP_SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=True))
    schedule_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey(f"{APP_SCHEMA}.schedules.id", ondelete="SET NULL"), nullable=True
        ),
    )
    query_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey(f"{APP_SCHEMA}.queries.id", ondelete="SET NULL"), nullable=True
        ),
    )
    target_schema: str = Field(default=INVENTORY_SCHEMA, sa_column=sa.Column(sa.Text, nullable=False))
    target_table: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    write_mode: str = Field(default="replace", sa_column=sa.Column(sa.Text, nullable=False))
    trigger: str = Field(default="manual", sa_column=sa.Column(sa.Text, nullable=False))
    backend: str = Field(default="local", sa_column=sa.Column(sa.Text, nullable=False, server_default="local"))
    backend_run_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    status: str = Field(default="running", sa_column=sa.Column(sa.Text, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))
    finished_at: datetime | None = Field(default=None, sa_column=_ts())
    rows_written: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    duration_s: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    error_class: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Error text with secret values redacted.
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Who started it (user for manual runs, "scheduler" otherwise), and where it ran.
    created_by: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    runner_host: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    runner_pid: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    # The cron slot a scheduled or catch-up run was fired for (None for manual runs).
    scheduled_for: datetime | None = Field(default=None, sa_column=_ts())


class QueryHistory(SQLModel, table=True):
    """One interactive (IDE) query execution."""

    __tablename__ = "query_history"
    __table_args__ = (
        sa.Index("ix_query_history_user_started", "user_name", sa.text("started_at DESC")),
        {"schema": APP_SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=True))
    user_name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    provider: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    query_text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    row_count: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    elapsed_s: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    started_at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, default_now=True))
