"""Schema migrations, on SQLite and PostgreSQL: the scripts build exactly what the models describe,
a database made before migrations existed is completed without losing a row, and the CLI reports
and applies them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from sqlmodel import Session, select

from disputeflow import cli
from disputeflow.db import migrate, queries, text_index
from disputeflow.db.models import CaseRecord
from disputeflow.db.seed import seed
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


def _gin_indexes(conn) -> set[str]:
    return {row[0] for row in conn.exec_driver_sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'cases' AND indexdef LIKE '%%USING gin%%'")}


def test_0010_indexes_the_text_of_the_cases_already_there_and_goes_back(
        bare: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database at 0009 holding cases: 0010 builds the bigram index of their text (and, on
    PostgreSQL, drops 0009's trigram indexes); the search then finds them through it; a downgrade
    takes it all away again (and makes the trigram indexes again)."""
    with bare.begin() as conn:
        migrate.upgrade(conn, "0009")
    seed(bare, cases=60, now=T0, seed=3, workers=0)
    sqlite = bare.dialect.name == "sqlite"
    with bare.connect() as conn:
        name = conn.execute(text("SELECT caller_name FROM cases ORDER BY case_id LIMIT 1 OFFSET 17")).scalar_one()
        if sqlite:
            assert "case_text" not in inspect(conn).get_table_names()
        else:
            assert _gin_indexes(conn) == {"ix_cases_description_trgm", "ix_cases_caller_name_trgm"}
    create_schema(bare)
    with bare.connect() as conn:
        assert migrate.current(conn) == migrate.head() and migrate.differences(conn) == []
        if sqlite:
            assert conn.execute(text("SELECT count(*) FROM case_text_rows")).scalar_one() == 60
        else:
            assert _gin_indexes(conn) == {"ix_cases_text_bigrams"}
    with Session(bare) as session:
        held = set(session.execute(text_index.sqlite_candidates(name) if sqlite else
                                   select(CaseRecord.case_id).where(text_index.pg_holds_bigrams(name))).scalars())
        expected = list(session.execute(text("SELECT case_id FROM cases WHERE caller_name LIKE :p OR description "
                                             "LIKE :p ORDER BY opened_at DESC, case_id DESC"),
                                        {"p": f"%{name}%"}).scalars())
        assert expected and held >= set(expected)
        monkeypatch.setattr(queries, "TEXT_WALK", 2)  # PostgreSQL: past a walk of 2 cases, to the index
        monkeypatch.setattr(queries, "TEXT_FEW", -1)  # (SQLite: 60 cases are few candidates)
        found = queries.list_cases(session, scope=queries.Scope(), filters=queries.CaseFilters(text=name))
        assert [c.case_id for c in found.items] == expected
    with bare.begin() as conn:
        migrate.downgrade(conn, "0009")
    with bare.connect() as conn:
        if sqlite:
            assert not {"case_text", "case_text_rows"} & set(inspect(conn).get_table_names())
            assert not conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                            "AND name LIKE 'case_text%'").all()
        else:
            assert _gin_indexes(conn) == {"ix_cases_description_trgm", "ix_cases_caller_name_trgm"}
            assert conn.exec_driver_sql("SELECT 1 FROM pg_proc WHERE proname = 'disputeflow_bigrams'").first() is None


def _case_indexes(conn) -> set[str]:
    return {index["name"] for index in inspect(conn).get_indexes("cases")}


def test_0011_indexes_the_filters_in_the_listing_order_and_goes_back(bare: Engine) -> None:
    """A database at 0010 holding cases (analysed, as the seed leaves it): 0011 replaces the
    single-column indexes of the listing's filters with (filter, opened_at, case_id), drops those of
    stage and opened_at (prefixes of indexes already there), keeps the text index's triggers and
    analyses `cases` again, and on PostgreSQL indexes the compliance counters by region level; the
    listing's answers do not change; a downgrade puts the old indexes back."""
    with bare.begin() as conn:
        migrate.upgrade(conn, "0010")
    seed(bare, cases=80, now=T0, seed=5, workers=0)
    sqlite = bare.dialect.name == "sqlite"
    filters = queries.CaseFilters(dispute_type="labour_wages", text="工资")

    def listing() -> list[str]:
        with Session(bare) as session:
            return [c.case_id for c in queries.list_cases(session, scope=queries.Scope(region_prefix="37"),
                                                          filters=filters).items]

    with bare.connect() as conn:
        before = _case_indexes(conn)
        if sqlite:
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'cases'")
            conn.commit()
    assert {"ix_cases_dispute_type", "ix_cases_stage", "ix_cases_opened_at", "ix_cases_region_code"} <= before
    answer = listing()
    assert answer
    with bare.begin() as conn:
        migrate.upgrade(conn, "0011")
    with bare.connect() as conn:
        after = _case_indexes(conn)
        if sqlite:
            analysed = {row[0] for row in conn.exec_driver_sql("SELECT idx FROM sqlite_stat1 WHERE tbl = 'cases'")}
            assert "ix_cases_dispute_type_opened_at" in analysed
            triggers = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            assert {"case_text_insert", "case_text_update", "case_text_delete"} <= triggers
    made = {f"ix_cases_{column}_opened_at" for column in
            ("phase", "category", "dispute_type", "urgency", "breached", "region_code")}
    gone = {f"ix_cases_{column}" for column in
            ("phase", "category", "dispute_type", "urgency", "breached", "region_code", "stage", "opened_at")}
    assert made <= after and not gone & after
    assert after - made == before - gone
    assert listing() == answer
    with bare.connect() as conn:  # PostgreSQL: the compliance counters by region level
        counters = {index["name"] for index in inspect(conn).get_indexes("compliance_counts")}
    assert ("ix_compliance_counts_level" in counters) == (not sqlite)
    with bare.begin() as conn:
        migrate.downgrade(conn, "0010")
    with bare.connect() as conn:
        assert _case_indexes(conn) == before
        assert "ix_compliance_counts_level" not in {index["name"] for index in inspect(conn).get_indexes("compliance_counts")}
    assert listing() == answer
