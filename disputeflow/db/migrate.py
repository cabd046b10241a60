"""Schema migrations with Alembic: the scripts live in `disputeflow/db/migrations/versions`.

`create_schema` (API and worker start-up) runs `upgrade` under its lock, so a database is always at
the newest revision the code knows. To change a table: change `models.py`, then
`disputeflow db revision "what changed"` writes a new script from the difference between the models
and a database at head (review it: autogenerate cannot see renames), and the tests check that the
scripts and the models agree on both SQLite and PostgreSQL (`tests/test_migrations.py`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from disputeflow.db import models  # noqa: F401  (registers the tables)

SCRIPTS = Path(__file__).parent / "migrations"


def config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None
    return found


def current(connection: Connection) -> str | None:
    """The revision the database is at; None before any migration ran."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, target: str = "head") -> None:
    """Bring the database to `target` inside the caller's transaction."""
    command.upgrade(config(connection), target)


def differences(connection: Connection) -> list:
    """What the models have that the database lacks, or the other way round ([] when they agree)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                          "include_object": models.include_object})
    return compare_metadata(context, SQLModel.metadata)


def downgrade(connection: Connection, target: str) -> None:
    """Take the database back to `target` (tests; or undoing a release, by hand)."""
    command.downgrade(config(connection), target)
