"""cases: the listing's filters indexed in the listing's order

A listing is newest first (opened_at, case_id). Filtered by a phase, a category, a dispute type,
an urgency, breached or not, or seen by a county's staff, it was served by the single-column index
of that filter (then sorted) or by the listing's own index (then every case read until the page
was full). With a text most of the cases of that filter do not hold
(`?q=工资&dispute_type=neighbours`), SQLite read all 100,000 cases of a province: 40-70 ms. Each
filter now has an index on (filter, opened_at, case_id), as the stage had since 0003: the walk
reads that filter's cases only, already in order. A county's code is a whole region code, so a
county's scope is an equality (`queries._in_region`) that its index serves.

Each replaces the single-column index of its filter (a prefix of it). The single-column indexes on
`stage` and `opened_at` go as well: `ix_cases_stage_opened_at` and `ix_cases_opened_at_case_id`
already begin with them, and every projected case paid for both.

On PostgreSQL the compliance counters get an index on (kind, length(region_code), first_day): a
report by city reads only the cities' rows of its weeks or months (7,494 rows for a year by week,
2.6 ms), not every level's (22,372 rows, 7.9 ms). SQLite reads its counters in key order from the
table itself (WITHOUT ROWID), faster than through such an index (10.2 against 12.5 ms): none
there. Not declared in `models.py` (`models.DATABASE_ONLY_INDEXES`).

Plain `op.create_index`/`op.drop_index` (not a batch): on SQLite a batch may copy the table, and the
text index's triggers on `cases` (0010) would be lost with it. Where the database has planner
statistics (SQLite's `sqlite_stat1`, as `disputeflow seed` leaves), `cases` is analysed again so
the new indexes have theirs; on PostgreSQL `cases` and the counters always are (not in offline
`--sql` mode: autovacuum will).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

FILTERS = ("phase", "category", "dispute_type", "urgency", "breached", "region_code")
LISTING = ["opened_at", "case_id"]
COUNTERS_BY_LEVEL = "ix_compliance_counts_level"  # PostgreSQL only (models.DATABASE_ONLY_INDEXES)


def _analyse_if_analysed() -> None:
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first() is not None:
            bind.execute(sa.text("ANALYZE cases"))
    else:
        bind.execute(sa.text("ANALYZE cases"))


def upgrade() -> None:
    for column in FILTERS:
        op.drop_index(f"ix_cases_{column}", table_name="cases")
        op.create_index(f"ix_cases_{column}_opened_at", "cases", [column, *LISTING], unique=False)
    op.drop_index("ix_cases_stage", table_name="cases")
    op.drop_index("ix_cases_opened_at", table_name="cases")
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {COUNTERS_BY_LEVEL} ON compliance_counts (kind, length(region_code), first_day)")
        if not op.get_context().as_sql:
            op.execute("ANALYZE compliance_counts")
    _analyse_if_analysed()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {COUNTERS_BY_LEVEL}")
    op.create_index("ix_cases_opened_at", "cases", ["opened_at"], unique=False)
    op.create_index("ix_cases_stage", "cases", ["stage"], unique=False)
    for column in reversed(FILTERS):
        op.drop_index(f"ix_cases_{column}_opened_at", table_name="cases")
        op.create_index(f"ix_cases_{column}", "cases", [column], unique=False)
    _analyse_if_analysed()
