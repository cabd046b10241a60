"""caller data reads: who was served a caller's data unmasked

One row per case per answer that carried the caller's name and phone (or identity card number)
unmasked: who, role, region, which fields, the route's template, when. No caller data in it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'caller_data_reads',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column('fields', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('read_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_caller_data_reads_case_read_at', 'caller_data_reads', ['case_id', 'read_at'], unique=False)
    op.create_index(op.f('ix_caller_data_reads_user_id'), 'caller_data_reads', ['user_id'], unique=False)
    op.create_index(op.f('ix_caller_data_reads_read_at'), 'caller_data_reads', ['read_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_caller_data_reads_read_at'), table_name='caller_data_reads')
    op.drop_index(op.f('ix_caller_data_reads_user_id'), table_name='caller_data_reads')
    op.drop_index('ix_caller_data_reads_case_read_at', table_name='caller_data_reads')
    op.drop_table('caller_data_reads')
