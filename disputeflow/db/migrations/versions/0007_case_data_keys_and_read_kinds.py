"""case data keys (crypto-erasure); the read log records what kind of read

- `case_data_keys`: one data key per case, wrapped by a payload master key; erasure destroys it;
- `caller_data_reads.kind`: "caller" (every row so far), "timeline", "history" or "payloads".

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'case_data_keys',
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('master_key_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column('destroyed_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('case_id'),
    )
    with op.batch_alter_table('caller_data_reads') as batch:
        batch.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                   server_default='caller'))


def downgrade() -> None:
    with op.batch_alter_table('caller_data_reads') as batch:
        batch.drop_column('kind')
    op.drop_table('case_data_keys')
