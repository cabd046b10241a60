"""intake keys: per user, and expiring

An Idempotency-Key of POST /cases now belongs to the user who sent it: the primary key becomes
(`owner`, `idempotency_key`), so the same key from another user is another key. Keys recorded
before this revision get the owner '' (they matched no user) and, like every key, are deleted once
older than DISPUTEFLOW_INTAKE_KEY_TTL_HOURS: `created_at` is indexed for that cleanup.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel's column types)
from alembic import op

import disputeflow.db.models  # noqa: F401  (UtcDateTime)

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _rebuild(primary_key: list[str], *, with_owner: bool) -> None:
    """Copy intake_requests into a table with the given primary key (SQLite cannot change one in
    place; PostgreSQL takes the same way), then put it in the old one's place."""
    columns = [
        sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('created_at', disputeflow.db.models.UtcDateTime(timezone=True), nullable=False),
    ]
    if with_owner:
        columns.insert(0, sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False))
    op.create_table('intake_requests_0004', *columns,
                    sa.PrimaryKeyConstraint(*primary_key, name='intake_requests_0004_pkey'))
    copied = "idempotency_key, case_id, fingerprint, created_at"
    if with_owner:
        op.execute(f"INSERT INTO intake_requests_0004 (owner, {copied}) SELECT '', {copied} FROM intake_requests")
    else:
        op.execute(f"INSERT INTO intake_requests_0004 ({copied}) SELECT {copied} FROM intake_requests")
    op.drop_table('intake_requests')
    op.rename_table('intake_requests_0004', 'intake_requests')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE intake_requests RENAME CONSTRAINT intake_requests_0004_pkey TO intake_requests_pkey")


def upgrade() -> None:
    _rebuild(['owner', 'idempotency_key'], with_owner=True)
    op.create_index('ix_intake_requests_created_at', 'intake_requests', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_intake_requests_created_at', table_name='intake_requests')
    # Several users may have used the same key: the oldest row of each key stays.
    op.execute("DELETE FROM intake_requests WHERE EXISTS (SELECT 1 FROM intake_requests AS older "
               "WHERE older.idempotency_key = intake_requests.idempotency_key "
               "AND (older.created_at < intake_requests.created_at OR (older.created_at = intake_requests.created_at "
               "AND older.owner < intake_requests.owner)))")
    _rebuild(['idempotency_key'], with_owner=False)
