"""compliance_counts keyed by (kind, first_day, clock, region_code); cases by stage and opening

Follows 0003 (issue 13), after it was merged:

- compliance_counts is keyed by (kind, first_day, clock, region_code) instead of (kind, period, ...)
  and, on SQLite, stored WITHOUT ROWID in that order: a report's range of periods of one kind is one
  contiguous run of rows (the separate (kind, first_day) index goes). The table is rebuilt and the
  clocks counted again;
- cases get an index on (stage, opened_at, case_id): a stage's cases, newest first.

Revision 0005 follows 0003 on the branch that wrote it; where 0004 exists (intake keys), chain it
after 0004 (down_revision = '0004'): the two touch different tables.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02 06:52:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import context, op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COUNTS = ("started", "met_on_time", "met_late", "breached_open", "open_on_time", "cancelled", "cancelled_after_breach")


def _columns() -> list[sa.Column]:
    return [
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
        sa.Column('first_day', sa.Date(), nullable=False),
        sa.Column('clock', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('last_day', sa.Date(), nullable=False),
        sa.Column('week', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
    ]


def _count_clocks() -> None:
    """Fill compliance_counts from the clocks there are (the code's own counting rules)."""
    from disputeflow.db.compliance import Counters, outcome  # noqa: PLC0415

    if context.is_offline_mode():  # `db upgrade --sql`: the counting needs the rows, not SQL text
        op.execute("-- compliance_counts: run `disputeflow db upgrade` (or start the API) to count existing clocks")
        return
    utc = disputeflow.db.models.UtcDateTime
    clocks = sa.table("clocks", sa.column("name"), sa.column("region_code"), sa.column("started_at", utc()),
                      sa.column("status"), sa.column("breached", sa.Boolean()), sa.column("due_at", utc()),
                      sa.column("ended_at", utc()), sa.column("met_at", utc()))
    counters = Counters()
    c = clocks.c
    rows = op.get_bind().execute(sa.select(c.name, c.region_code, c.started_at, c.status, c.breached, c.due_at,
                                           sa.func.coalesce(c.ended_at, c.met_at)))
    for name, region, started_at, status, breached, due_at, ended_at in rows:
        counters.add(name, region, started_at, outcome(status, bool(breached), due_at, ended_at), +1, started=True)
    counts = sa.table("compliance_counts", *(sa.column(n) for n in (
        "kind", "period", "clock", "region_code", "first_day", "last_day", "week", "month", *COUNTS)))
    # This revision's table holds the counties' rows only; the city and province rows the counters
    # also keep now come with 0008 (which counts again).
    batch = [row for row in counters.rows() if len(row["region_code"]) not in (2, 4)]
    for start in range(0, len(batch), 2000):
        op.get_bind().execute(counts.insert(), batch[start:start + 2000])


def upgrade() -> None:
    op.drop_table('compliance_counts')
    op.create_table('compliance_counts', *_columns(),
                    sa.PrimaryKeyConstraint('kind', 'first_day', 'clock', 'region_code'),
                    sqlite_with_rowid=False)
    _count_clocks()
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_stage_opened_at', ['stage', 'opened_at', 'case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_stage_opened_at')
    op.drop_table('compliance_counts')
    op.create_table('compliance_counts', *_columns(),
                    sa.PrimaryKeyConstraint('kind', 'period', 'clock', 'region_code'))
    with op.batch_alter_table('compliance_counts', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_counts_kind_first_day', ['kind', 'first_day'], unique=False)
    _count_clocks()
