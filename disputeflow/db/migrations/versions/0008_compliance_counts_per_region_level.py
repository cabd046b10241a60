"""compliance_counts per region level: each clock counts in its county, city and province

Reports by city or province read their own rows instead of adding up the counties' (a year by week
and city was a GROUP BY over some 14,000 county rows). No schema change: the rows of the 4- and
2-digit region codes join the 6-digit ones, under the same key. The table is emptied and the
clocks counted again (`disputeflow.db.compliance`'s own rules); the downgrade keeps the counties.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COUNTS = ("started", "met_on_time", "met_late", "breached_open", "open_on_time", "cancelled", "cancelled_after_breach")


def upgrade() -> None:
    from disputeflow.db.compliance import Counters, outcome  # noqa: PLC0415

    op.execute("DELETE FROM compliance_counts")
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
    batch = counters.rows()
    for start in range(0, len(batch), 2000):
        op.get_bind().execute(counts.insert(), batch[start:start + 2000])


def downgrade() -> None:
    op.execute("DELETE FROM compliance_counts WHERE length(region_code) IN (2, 4)")
