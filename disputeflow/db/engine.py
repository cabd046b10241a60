"""Engines and sessions. SQLite (the embedded default) and PostgreSQL (production) behave alike here."""

from __future__ import annotations

import secrets
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from disputeflow.db import models  # noqa: F401  (registers the tables)
from disputeflow.db import compliance  # noqa: F401  (keeps the compliance counters with every clock written)
from disputeflow.db import text_index


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
        # hide_parameters: a database error's text (logged, or an activity's failure in Temporal)
        # must not quote the row it failed on, which may hold a caller's name or story.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # The worker and the API write the same file from two processes: WAL lets readers
            # proceed while one writes; busy_timeout waits instead of failing on a lock.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _enter_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # pysqlite defers BEGIN on its own; take transactions over so that a writer can ask for
        # BEGIN IMMEDIATE (see `write_session`) and hold the write lock from its first read.
        @event.listens_for(engine, "connect")
        def _text_terms(dbapi_conn, _record):  # pragma: no cover - trivial
            # The text search index's triggers call it (disputeflow/db/text_index.py).
            dbapi_conn.create_function(text_index.SQLITE_TERMS_FUNCTION, 2, text_index.sqlite_terms,
                                       deterministic=True)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _planner_settings(dbapi_conn, _record):  # pragma: no cover - trivial
        with dbapi_conn.cursor() as cur:
            # psycopg prepares a statement run five times on a connection, and PostgreSQL may then
            # plan it once for any values: a listing filtered by a rare dispute type would walk every
            # case in the listing's order (measured 26-51 ms instead of 2-8 ms at 100,000 cases).
            # Every statement here is planned in a millisecond or two: plan each with its values.
            cur.execute("SET plan_cache_mode = force_custom_plan")
            # PostgreSQL's default cost of a random page read (4) assumes spinning disks: it then
            # walks a county's 2,000 newest cases through the index of every case (18 ms) rather
            # than the county's own (3 ms). The read model is small and hot; 1.1 is the usual
            # value for SSDs. Only where nobody set it: a value in postgresql.conf, ALTER DATABASE
            # or ALTER ROLE, or the URL's `options`, is left alone.
            cur.execute("SELECT source FROM pg_settings WHERE name = 'random_page_cost'")
            if cur.fetchone()[0] == "default":
                cur.execute("SET random_page_cost = 1.1")
        dbapi_conn.commit()  # a SET in a transaction that rolls back is undone

    return engine


def _private_file(path: Path) -> None:
    """Create the SQLite file 0600 (its folder 0700 when made here) before SQLite does, with the
    process's umask; SQLite gives its -wal and -shm files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _enter_wal(cur: sqlite3.Cursor, patience: float = 30.0) -> None:
    """Switch the file to WAL (a persistent setting; a no-op once done). The switch needs the
    file to itself, and SQLite answers "database is locked" at once, without its busy handler,
    while another connection is mid-write (it would risk a deadlock) -- which is exactly what
    happens when the API and the worker open a new file together. Wait for that writer instead."""
    deadline = time.monotonic() + patience
    pause = 0.01
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


SCHEMA_LOCK_KEY = 0x5D15_F10E  # PostgreSQL advisory lock: one process creates the schema at a time


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema: the migrations in `disputeflow/db/migrations` not
    yet applied (a new database gets them all; one made before migrations existed is completed and
    marked). Safe when the API and the worker start together: one transaction under a lock
    (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE)."""
    from disputeflow.db import migrate  # here: alembic is needed at start-up only

    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if not is_sqlite(engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        migrate.upgrade(conn)
    from disputeflow.db.audit import install_append_only_guards  # here: audit imports this module

    install_append_only_guards(engine)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for read-then-write work (the audit chain's head, a counter), committed on exit.

    SQLite: BEGIN IMMEDIATE takes the write lock before the first read, so two writers cannot
    interleave. PostgreSQL: callers lock what they read with SELECT ... FOR UPDATE.
    """
    with Session(engine) as session:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class NotWritable(Exception):
    """The database cannot take a write now; the message says why (no data in it)."""


# The probe row: a case counter no region can have (region codes are digits), rolled back.
_PROBE_INSERT = "INSERT INTO case_counters (region_code, day, last) VALUES ('health', :day, 0)"


def probe_write(engine: Engine, *, lock_timeout: float = 0.5) -> None:
    """Write one row in a transaction and roll it back: `NotWritable` if the database refuses it,
    or if another writer holds the lock for longer than `lock_timeout` seconds (writes would wait
    behind it). Nothing is left behind. SQLite: on a fresh connection to the file named by the
    URL, never creating it, so a file moved or deleted from under the running processes shows
    (their open connections would go on writing to the moved file)."""
    day = secrets.token_hex(4)
    if not is_sqlite(engine):
        with engine.connect() as conn, conn.begin() as transaction:
            # Bounded waits: for a lock (LOCK TABLE, a migration), and for the statement itself.
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
            conn.execute(text(f"SET LOCAL statement_timeout = '{int(lock_timeout * 2000)}ms'"))
            try:
                conn.execute(text(_PROBE_INSERT), {"day": day})
            except OperationalError as exc:
                if "lock timeout" in str(exc.orig):
                    raise NotWritable(f"another writer has held a lock for over {lock_timeout:g} s: "
                                      "writes wait behind it") from None
                raise
            finally:
                transaction.rollback()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin() as transaction:
            conn.execute(text(_PROBE_INSERT), {"day": day})
            transaction.rollback()
        return
    path = Path(database)
    if not path.exists():
        raise NotWritable(f"the database file {path} is missing (moved or deleted while in use)")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=lock_timeout,
                               isolation_level=None)
    except sqlite3.OperationalError as exc:
        raise NotWritable(f"the database file {path} cannot be opened for writing: {exc}") from None
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_PROBE_INSERT.replace(":day", "?"), (day,))
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise NotWritable(f"another writer has held the database's write lock for over {lock_timeout:g} s: "
                              "writes wait behind it") from None
        raise NotWritable(f"the database file {path} refuses a write: {exc}") from None
    finally:
        conn.close()


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and pool) per URL per process."""
    engine = make_engine(url)
    create_schema(engine)
    return engine
