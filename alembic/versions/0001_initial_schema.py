"""Initial schema: both schemas and every app table.

Downgrade drops the app tables but keeps schema stackql_inventory: it holds analysts' data.

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS stackql_app")
    op.execute("CREATE SCHEMA IF NOT EXISTS stackql_inventory")
    op.create_table('provider_config',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('env_var_name', sa.Text(), nullable=False),
    sa.Column('secret_scope', sa.Text(), nullable=False),
    sa.Column('secret_key', sa.Text(), nullable=False),
    sa.Column('created_by', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'env_var_name', name='uq_provider_config_var'),
    schema='stackql_app'
    )
    op.create_table('queries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('query_text', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('created_by', 'name', name='uq_queries_owner_name'),
    schema='stackql_app'
    )
    op.create_table('query_history',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('user_name', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.Column('query_text', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('row_count', sa.BigInteger(), nullable=True),
    sa.Column('elapsed_s', sa.Float(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='stackql_app'
    )
    op.create_index('ix_query_history_user_started', 'query_history', ['user_name', sa.literal_column('started_at DESC')], unique=False, schema='stackql_app')
    op.create_table('schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('query_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Text(), nullable=True),
    sa.Column('cron_expression', sa.Text(), nullable=False),
    sa.Column('timezone', sa.Text(), server_default='UTC', nullable=False),
    sa.Column('target_schema', sa.Text(), server_default='stackql_inventory', nullable=False),
    sa.Column('target_table', sa.Text(), nullable=False),
    sa.Column('write_mode', sa.Text(), server_default='replace', nullable=False),
    sa.Column('key_columns', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_status', sa.Text(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_by', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("write_mode IN ('replace', 'append', 'history')", name='ck_schedules_write_mode'),
    sa.ForeignKeyConstraint(['query_id'], ['stackql_app.queries.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('target_schema', 'target_table', name='uq_schedules_target'),
    schema='stackql_app'
    )
    op.create_index(op.f('ix_stackql_app_schedules_query_id'), 'schedules', ['query_id'], unique=False, schema='stackql_app')
    op.create_table('runs',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('schedule_id', sa.Integer(), nullable=True),
    sa.Column('query_id', sa.Integer(), nullable=True),
    sa.Column('target_schema', sa.Text(), nullable=False),
    sa.Column('target_table', sa.Text(), nullable=False),
    sa.Column('write_mode', sa.Text(), nullable=False),
    sa.Column('trigger', sa.Text(), nullable=False),
    sa.Column('backend', sa.Text(), server_default='local', nullable=False),
    sa.Column('backend_run_id', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rows_written', sa.BigInteger(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('error_class', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Text(), server_default='', nullable=False),
    sa.Column('runner_host', sa.Text(), nullable=True),
    sa.Column('runner_pid', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'success', 'failed', 'skipped', 'cancelled')", name='ck_runs_status'),
    sa.ForeignKeyConstraint(['query_id'], ['stackql_app.queries.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['schedule_id'], ['stackql_app.schedules.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    schema='stackql_app'
    )
    op.create_index('ix_runs_schedule_started', 'runs', ['schedule_id', sa.literal_column('started_at DESC')], unique=False, schema='stackql_app')
    op.create_index('ix_runs_started', 'runs', [sa.literal_column('started_at DESC')], unique=False, schema='stackql_app')
    op.create_index(
        'ix_schedules_due', 'schedules', ['next_run_at'], unique=False, schema='stackql_app',
        postgresql_where=sa.text('is_active'),
    )


def downgrade() -> None:
    op.drop_index('ix_schedules_due', table_name='schedules', schema='stackql_app')
    op.drop_index('ix_runs_started', table_name='runs', schema='stackql_app')
    op.drop_index('ix_runs_schedule_started', table_name='runs', schema='stackql_app')
    op.drop_table('runs', schema='stackql_app')
    op.drop_index(op.f('ix_stackql_app_schedules_query_id'), table_name='schedules', schema='stackql_app')
    op.drop_table('schedules', schema='stackql_app')
    op.drop_index('ix_query_history_user_started', table_name='query_history', schema='stackql_app')
    op.drop_table('query_history', schema='stackql_app')
    op.drop_table('queries', schema='stackql_app')
    op.drop_table('provider_config', schema='stackql_app')
