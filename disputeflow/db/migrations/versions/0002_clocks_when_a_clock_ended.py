"""clocks: when a clock ended

`ended_at` is when a clock stopped, met or cancelled (`met_at` keeps meaning met). Compliance needs
it to tell a clock cancelled after its due time had passed (a missed deadline, even if the breach
had not fired yet) from one cancelled in time. Met clocks get theirs from `met_at`; clocks cancelled
before this revision keep none and count as before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:20:18.738431
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ended_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=True))
    op.execute("UPDATE clocks SET ended_at = met_at WHERE status = 'met'")


def downgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_column('ended_at')
