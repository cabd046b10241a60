"""cases: a bigram index for the text search, on SQLite and PostgreSQL

`GET /cases?q=` and `POST /cases/search` look for a text anywhere in the description or the
caller's name (`ILIKE '%text%'`). Without an index that serves two-character texts (most names,
many words), a text that few cases hold meant reading every case. This migration builds the index
of `disputeflow.db.text_index` (see there): on SQLite an FTS5 table of each case's bigrams with a
table of row numbers and three triggers on `cases` that keep them; on PostgreSQL an SQL function and
a GIN index on the bigrams of the name and the description. Existing cases are indexed here.

It serves every text of two characters or more, so the trigram indexes of 0009 (texts of three or
more, and only where pg_trgm could be had) are dropped: no query uses them any more, and each
projection of a new case paid for them. The extension stays. A downgrade makes them again when
pg_trgm is there.

On SQLite the connection must have the function `disputeflow_text_terms` (every connection made by
`disputeflow.db.engine.make_engine` has): offline SQL for SQLite can only be run through it.

Not declared in `models.py`: `models.DATABASE_ONLY_INDEXES` and `DATABASE_ONLY_TABLES` name them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 18:30:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from disputeflow.db import text_index

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
TRIGRAM_INDEXES = {"ix_cases_description_trgm": "description", "ix_cases_caller_name_trgm": "caller_name"}  # 0009's


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for ddl in text_index.SQLITE_DDL:
            op.execute(ddl)
        if op.get_context().as_sql:
            op.execute(f"INSERT INTO {text_index.ROWS_TABLE} (case_id) SELECT case_id FROM cases "
                       "ORDER BY opened_at, case_id")
            op.execute(f"INSERT INTO {text_index.FTS_TABLE} (rowid, terms) SELECT r.row, "
                       f"{text_index.SQLITE_TERMS_FUNCTION}(c.caller_name, c.description) "
                       f"FROM {text_index.ROWS_TABLE} AS r JOIN cases AS c ON c.case_id = r.case_id")
            return
        indexed = text_index.rebuild_sqlite(op.get_bind())
        log.info("indexed the text of %d cases for the search", indexed)
        return
    for ddl in text_index.PG_DDL:
        op.execute(ddl)
    for name in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    for ddl in text_index.SQLITE_DROP if dialect == "sqlite" else text_index.PG_DROP:
        op.execute(ddl)
    if dialect == "postgresql" and (op.get_context().as_sql or op.get_bind().execute(
            sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first() is not None):
        for name, column in TRIGRAM_INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON cases USING gin ({column} gin_trgm_ops)")
