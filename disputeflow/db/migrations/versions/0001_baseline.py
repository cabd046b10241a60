"""baseline: the schema as of the first release with migrations

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-30 08:18:36.068128
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import context, op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def _table(name: str, *columns: object, **kw: object) -> None:
    if context.is_offline_mode() or name not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(name, *columns, **kw)


def _index(table: str, name: str, columns: list[str], **kw: object) -> None:
    if context.is_offline_mode() or name not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, **kw)


def upgrade() -> None:
    """Create what is missing. A database made before migrations existed (by `create_all`) has some
    or all of this already; it gets the rest, and is then at this revision like a new one."""
    _table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('event_seq', sa.Integer(), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('recorded_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'event_seq', name='uq_audit_case_event'),
    sa.UniqueConstraint('hash'),
    sa.UniqueConstraint('prev_hash')
    )
    _index('audit_log', 'ix_audit_log_case_id', ['case_id'], unique=False)

    _table('case_counters',
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('day', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('region_code', 'day')
    )
    _table('case_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('actor_role', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'seq', name='uq_case_events_case_seq')
    )
    _index('case_events', 'ix_case_events_at', ['at'], unique=False)
    _index('case_events', 'ix_case_events_case_id', ['case_id'], unique=False)
    _index('case_events', 'ix_case_events_type', ['type'], unique=False)

    _table('case_tasks',
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('assignee_role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('assignee_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('due_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('task_id')
    )
    _index('case_tasks', 'ix_case_tasks_assignee_id', ['assignee_id'], unique=False)
    _index('case_tasks', 'ix_case_tasks_assignee_role', ['assignee_role'], unique=False)
    _index('case_tasks', 'ix_case_tasks_case_id', ['case_id'], unique=False)
    _index('case_tasks', 'ix_case_tasks_due_at', ['due_at'], unique=False)
    _index('case_tasks', 'ix_case_tasks_region_code', ['region_code'], unique=False)
    _index('case_tasks', 'ix_case_tasks_status', ['status'], unique=False)

    _table('cases',
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('workflow_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dispute_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('urgency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('special_groups', sa.JSON(), nullable=False),
    sa.Column('caller_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('caller_phone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('mediator_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lawyer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('opened_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('final_outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('satisfaction', sa.Integer(), nullable=True),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('breached', sa.Boolean(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('case_id'),
    sa.UniqueConstraint('workflow_id')
    )
    _index('cases', 'ix_cases_breached', ['breached'], unique=False)
    _index('cases', 'ix_cases_category', ['category'], unique=False)
    _index('cases', 'ix_cases_dispute_type', ['dispute_type'], unique=False)
    _index('cases', 'ix_cases_lawyer_id', ['lawyer_id'], unique=False)
    _index('cases', 'ix_cases_mediator_id', ['mediator_id'], unique=False)
    _index('cases', 'ix_cases_opened_at', ['opened_at'], unique=False)
    _index('cases', 'ix_cases_phase', ['phase'], unique=False)
    _index('cases', 'ix_cases_region_code', ['region_code'], unique=False)
    _index('cases', 'ix_cases_stage', ['stage'], unique=False)
    _index('cases', 'ix_cases_urgency', ['urgency'], unique=False)

    _table('clocks',
    sa.Column('clock_id', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('assignee_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('target', sa.Float(), nullable=False),
    sa.Column('started_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('due_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('next_warning_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('breached', sa.Boolean(), nullable=False),
    sa.Column('breached_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('met_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('warnings_fired', sa.Integer(), nullable=False),
    sa.Column('paused_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('pause_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('clock_id')
    )
    _index('clocks', 'ix_clocks_assignee_id', ['assignee_id'], unique=False)
    _index('clocks', 'ix_clocks_breached', ['breached'], unique=False)
    _index('clocks', 'ix_clocks_case_id', ['case_id'], unique=False)
    _index('clocks', 'ix_clocks_due_at', ['due_at'], unique=False)
    _index('clocks', 'ix_clocks_name', ['name'], unique=False)
    _index('clocks', 'ix_clocks_region_code', ['region_code'], unique=False)
    _index('clocks', 'ix_clocks_stage', ['stage'], unique=False)
    _index('clocks', 'ix_clocks_started_at', ['started_at'], unique=False)
    _index('clocks', 'ix_clocks_status', ['status'], unique=False)

    _table('intake_requests',
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('idempotency_key')
    )
    _table('lawyers',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('specialties', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _index('lawyers', 'ix_lawyers_region_code', ['region_code'], unique=False)

    _table('mediators',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('expertise', sa.JSON(), nullable=False),
    sa.Column('senior', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _index('mediators', 'ix_mediators_region_code', ['region_code'], unique=False)

    _table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('recipient_role', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('recipient_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    _index('outbox', 'ix_outbox_case_id', ['case_id'], unique=False)
    _index('outbox', 'ix_outbox_unsent', ['id'], unique=False, sqlite_where=sa.text('sent_at IS NULL'), postgresql_where=sa.text('sent_at IS NULL'))

    _table('notification_acks',
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('acknowledged_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('acknowledged_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('outbox_id')
    )
    _table('notification_parked',
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('parked_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('outbox_id')
    )


def downgrade() -> None:
    op.drop_table('notification_parked')
    op.drop_table('notification_acks')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unsent', sqlite_where=sa.text('sent_at IS NULL'), postgresql_where=sa.text('sent_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_outbox_case_id'))

    op.drop_table('outbox')
    with op.batch_alter_table('mediators', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mediators_region_code'))

    op.drop_table('mediators')
    with op.batch_alter_table('lawyers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lawyers_region_code'))

    op.drop_table('lawyers')
    op.drop_table('intake_requests')
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clocks_status'))
        batch_op.drop_index(batch_op.f('ix_clocks_started_at'))
        batch_op.drop_index(batch_op.f('ix_clocks_stage'))
        batch_op.drop_index(batch_op.f('ix_clocks_region_code'))
        batch_op.drop_index(batch_op.f('ix_clocks_name'))
        batch_op.drop_index(batch_op.f('ix_clocks_due_at'))
        batch_op.drop_index(batch_op.f('ix_clocks_case_id'))
        batch_op.drop_index(batch_op.f('ix_clocks_breached'))
        batch_op.drop_index(batch_op.f('ix_clocks_assignee_id'))

    op.drop_table('clocks')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_urgency'))
        batch_op.drop_index(batch_op.f('ix_cases_stage'))
        batch_op.drop_index(batch_op.f('ix_cases_region_code'))
        batch_op.drop_index(batch_op.f('ix_cases_phase'))
        batch_op.drop_index(batch_op.f('ix_cases_opened_at'))
        batch_op.drop_index(batch_op.f('ix_cases_mediator_id'))
        batch_op.drop_index(batch_op.f('ix_cases_lawyer_id'))
        batch_op.drop_index(batch_op.f('ix_cases_dispute_type'))
        batch_op.drop_index(batch_op.f('ix_cases_category'))
        batch_op.drop_index(batch_op.f('ix_cases_breached'))

    op.drop_table('cases')
    with op.batch_alter_table('case_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_tasks_status'))
        batch_op.drop_index(batch_op.f('ix_case_tasks_region_code'))
        batch_op.drop_index(batch_op.f('ix_case_tasks_due_at'))
        batch_op.drop_index(batch_op.f('ix_case_tasks_case_id'))
        batch_op.drop_index(batch_op.f('ix_case_tasks_assignee_role'))
        batch_op.drop_index(batch_op.f('ix_case_tasks_assignee_id'))

    op.drop_table('case_tasks')
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_events_type'))
        batch_op.drop_index(batch_op.f('ix_case_events_case_id'))
        batch_op.drop_index(batch_op.f('ix_case_events_at'))

    op.drop_table('case_events')
    op.drop_table('case_counters')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_case_id'))

    op.drop_table('audit_log')
