"""cases: trigram indexes for the text search on PostgreSQL (pg_trgm)

`GET /cases?q=` and `POST /cases/search` look for a text anywhere in the description or the
caller's name (`ILIKE '%text%'`). On PostgreSQL a GIN index with `gin_trgm_ops` on each column
serves that (a bitmap scan of the cases whose trigrams match, instead of reading every case) for a
text of 3 characters or more. The indexes need the `pg_trgm` extension: this migration creates it
when the server offers it and the role may (it is a trusted extension since PostgreSQL 13: the
database's owner may), and otherwise goes on without the indexes, saying so; the search then scans,
as before. SQLite keeps its path (no such index there; its LIKE scans).

The indexes are not declared in `models.py` (SQLAlchemy cannot say "PostgreSQL only, when the
extension exists"); `models.DATABASE_ONLY_INDEXES` names them so that the model comparison leaves
them alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:45:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
INDEXES = {"ix_cases_description_trgm": "description", "ix_cases_caller_name_trgm": "caller_name"}


def _create_indexes() -> None:
    for name, column in INDEXES.items():
        op.create_index(name, 'cases', [column], unique=False, postgresql_using='gin',
                        postgresql_ops={column: 'gin_trgm_ops'})


def upgrade() -> None:
    if context.is_offline_mode():
        if op.get_context().dialect.name == "postgresql":
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            _create_indexes()
        return
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first() is None:
        log.warning("pg_trgm is not installed on this PostgreSQL server: the text search of cases will scan "
                    "(docs/operations.md, 'Search': how to add the indexes later)")
        return
    try:
        with bind.begin_nested():  # a savepoint: a refusal leaves the rest of the upgrade going
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("could not create the pg_trgm extension (%s): the text search of cases will scan "
                    "(docs/operations.md, 'Search': how to add the indexes later)", type(exc.orig).__name__)
        return
    _create_indexes()


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")  # the extension stays: other things may use it
