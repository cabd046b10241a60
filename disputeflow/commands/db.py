"""`disputeflow db current|upgrade|revision`: the database schema and its migrations."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import click

from disputeflow.cli import command, group


db_group = group("db", "The database schema: where it stands, bring it up to date, or write a new migration.")


@command("current", "The revision the database (DATABASE_URL) is at, and the newest.", parent=db_group,
         action="current")
def current(args: SimpleNamespace) -> int:
    return db(args)


@command("upgrade", "Apply the migrations not yet applied (the API and the worker also do at start-up).",
         parent=db_group, action="upgrade")
@click.option("--sql", is_flag=True, help="print the SQL instead, for a DBA to run")
def upgrade(args: SimpleNamespace) -> int:
    return db(args)


@command("revision", "Write a new migration from what models.py changed. MESSAGE: what changed, "
                     "e.g. 'clocks: ended_at'.", parent=db_group, action="revision")
@click.argument("message")
def revision(args: SimpleNamespace) -> int:
    return db(args)


def db(args: SimpleNamespace) -> int:
    from alembic import command as alembic

    from disputeflow.db import migrate
    from disputeflow.db.engine import create_schema, make_engine
    from disputeflow.settings import get_settings

    url = get_settings().effective_database_url
    if args.action == "current":
        engine = make_engine(url)
        with engine.connect() as conn:
            at = migrate.current(conn)
        engine.dispose()
        newest = migrate.head()
        print(f"database at {at or 'no revision (empty, or made before migrations)'}; newest is {newest}"
              + ("" if at == newest else ": `disputeflow db upgrade` (or starting the API or worker) applies it"))
        return 0
    if args.action == "upgrade":
        if args.sql:
            alembic.upgrade(migrate.config(url=url), "head", sql=True)
            return 0
        engine = make_engine(url)
        create_schema(engine)
        with engine.connect() as conn:
            print(f"database at {migrate.current(conn)}")
        engine.dispose()
        return 0
    # A new script from the difference between the models and a scratch database at head.
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        with engine.begin() as conn:
            migrate.upgrade(conn)
            if not migrate.differences(conn):
                print("the models and the newest migration agree: nothing to write")
                return 1
            newest = migrate.head()
            number = f"{int(newest) + 1:04d}" if newest.isdigit() else None  # 0001, 0002, ...
            script = alembic.revision(migrate.config(conn), message=args.message, autogenerate=True, rev_id=number)
        engine.dispose()
    print(f"wrote {script.path}: review it (autogenerate cannot see renames), then run the tests")
    return 0
