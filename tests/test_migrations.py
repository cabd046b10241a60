"""Schema migrations, on SQLite and PostgreSQL: the scripts build exactly what the models describe,
a database made before migrations existed is completed without losing a row, and the CLI reports
and applies them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from disputeflow import cli
from disputeflow.db import migrate
from disputeflow.db.engine import create_schema, make_engine
from disputeflow.settings import get_settings

T0 = datetime(2026, 11, 2, 1, tzinfo=timezone.utc)


@pytest.fixture
def bare(database_url: str) -> Engine:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_a_new_database_is_built_by_the_migrations_and_matches_the_models(bare: Engine) -> None:
    create_schema(bare)
    with bare.connect() as conn:
        assert migrate.current(conn) == migrate.head()
        # The gate for every change to models.py: without its migration this lists what differs.
        assert migrate.differences(conn) == []


def _described(differences: list) -> set[tuple[str, str]]:
    """(operation, name of the column or index) of each difference."""
    return {(d[0], d[3].name if d[0].endswith("_column") else d[1].name) for d in differences}


def test_a_model_change_without_its_migration_is_caught(bare: Engine) -> None:
    """What the test above guards against: the newest migrations undone, the models ahead of them."""
    create_schema(bare)
    with bare.begin() as conn:
        migrate.downgrade(conn, "0003")
    with bare.connect() as conn:
        assert ("add_index", "ix_cases_stage_opened_at") in {
            (d[0], d[-1].name) for d in migrate.differences(conn) if isinstance(d, tuple)}
    with bare.begin() as conn:
        migrate.downgrade(conn, "0002")
    with bare.connect() as conn:
        assert migrate.current(conn) == "0002"
        found = {(d[0], d[-1].name) for d in migrate.differences(conn) if isinstance(d, tuple)}
        assert {("add_table", "compliance_counts"), ("add_column", "caller_phone_digits"),
                ("add_index", "ix_clocks_open_unbreached_due"), ("add_index", "ix_case_tasks_open_assignee"),
                ("add_column", "owner"), ("add_index", "ix_intake_requests_created_at")} <= found
    with bare.begin() as conn:
        migrate.downgrade(conn, "0001")
    with bare.connect() as conn:
        assert migrate.current(conn) == "0001"
        assert ("add_column", "ended_at") in {(d[0], d[-1].name) for d in migrate.differences(conn)
                                              if isinstance(d, tuple)}
    create_schema(bare)  # and the next start brings it back to head
    with bare.connect() as conn:
        assert migrate.current(conn) == migrate.head() and migrate.differences(conn) == []


def test_a_database_made_before_migrations_is_completed_and_keeps_its_rows(bare: Engine) -> None:
    """A database from before migrations (tables by `create_all`, no `alembic_version`), and older
    still than some tables and indexes: it gets what it lacks, its rows stay, met clocks get their
    end time from `met_at`."""
    with bare.begin() as conn:
        migrate.upgrade(conn, "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE notification_parked"))
        conn.execute(text("DROP INDEX ix_outbox_unsent"))
        conn.execute(text(
            "INSERT INTO clocks (clock_id, case_id, name, title, stage, region_code, unit, target, started_at,"
            " due_at, status, breached, met_at, warnings_fired, policy_version) VALUES"
            " ('c-1:triage_response-1', 'c-1', 'triage_response', 't', 'triage', '370102', 'working_days', 1,"
            " :t0, :t0, 'met', false, :t0, 0, '2026.1')"), {"t0": T0})
    create_schema(bare)
    with bare.connect() as conn:
        assert migrate.current(conn) == migrate.head() and migrate.differences(conn) == []
        assert "notification_parked" in inspect(conn).get_table_names()
        ended = conn.execute(text("SELECT ended_at FROM clocks WHERE clock_id = 'c-1:triage_response-1'")).scalar()
    assert ended is not None  # backfilled from met_at by 0002


def test_the_db_command_reports_and_applies(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli.main(["db", "current"]) == 0
        assert "no revision" in capsys.readouterr().out
        assert cli.main(["db", "upgrade"]) == 0
        assert capsys.readouterr().out.strip() == f"database at {migrate.head()}"
        assert cli.main(["db", "current"]) == 0
        assert capsys.readouterr().out.strip() == f"database at {migrate.head()}; newest is {migrate.head()}"
        assert cli.main(["db", "upgrade", "--sql"]) == 0  # the DDL for a DBA, nothing applied
        sql = capsys.readouterr().out
        assert "CREATE TABLE clocks" in sql and "ADD COLUMN ended_at" in sql
        assert cli.main(["db", "revision", "nothing changed"]) == 1  # the models agree with head
    finally:
        get_settings.cache_clear()
