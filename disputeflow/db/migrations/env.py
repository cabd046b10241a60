"""Alembic's environment: the connection comes from `disputeflow.db.migrate` (never from a file),
already inside the start-up transaction and its lock; or, offline, a URL to print SQL for."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from disputeflow.db import models  # noqa: F401  (registers the tables)

config = context.config
connection = config.attributes.get("connection")
options = dict(target_metadata=SQLModel.metadata, compare_type=True, render_as_batch=True,
               include_object=models.include_object)

if connection is None:  # offline: `disputeflow db upgrade --sql` prints the DDL for a DBA to run
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
else:
    context.configure(connection=connection, **options)
with context.begin_transaction():
    context.run_migrations()
