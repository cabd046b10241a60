"""The tables on both backends (SQLite, PostgreSQL): schema, time zones, JSON, keys, transactions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, SQLModel, select

from disputeflow.db.engine import write_session
from disputeflow.db.models import CaseRecord, IntakeRequest

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENED = datetime(2026, 2, 14, 9, 30, 15, 123456, tzinfo=SHANGHAI)  # a Saturday made a working day


def a_case(case_id: str = "110101-20260214-0001", **overrides) -> CaseRecord:
    fields = dict(
        case_id=case_id,
        workflow_id=f"case-{case_id}",
        stage="intake",
        phase="open",
        region_code="110101",
        channel="phone",
        category="dispute",
        dispute_type="labour_wages",
        urgency="normal",
        special_groups=["migrant_worker", "elderly"],
        caller_name="张三",
        caller_phone="+8613800138000",
        description="工地拖欠三个月工资，约两万元。",
        opened_at=OPENED,
        updated_at=OPENED + timedelta(minutes=5),
        policy_version="2026.1",
    )
    fields.update(overrides)
    return CaseRecord(**fields)


def test_schema_has_every_table(engine: Engine) -> None:
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())


def test_case_record_round_trips(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(a_case())
        session.commit()

    with Session(engine) as session:
        case = session.get(CaseRecord, "110101-20260214-0001")
        assert case is not None
        # Aware in, aware out, the same instant (stored in UTC on both backends).
        assert case.opened_at.tzinfo is not None and case.opened_at == OPENED
        assert case.updated_at == OPENED + timedelta(minutes=5)
        assert case.opened_at.utcoffset() == timedelta(0)
        assert case.closed_at is None
        assert case.special_groups == ["migrant_worker", "elderly"]
        assert case.caller_name == "张三" and case.description == "工地拖欠三个月工资，约两万元。"


def test_aware_datetimes_compare_in_queries(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(a_case())
        session.commit()
        # 01:30:15 UTC is the same instant as 09:30:15 in Shanghai: a bound in another zone works.
        just_before = OPENED.astimezone(timezone.utc) - timedelta(seconds=1)
        found = session.exec(select(CaseRecord).where(CaseRecord.opened_at > just_before)).all()
        assert [case.case_id for case in found] == ["110101-20260214-0001"]
        assert session.exec(select(CaseRecord).where(CaseRecord.opened_at > OPENED)).all() == []


def test_naive_datetime_is_rejected(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(a_case(opened_at=datetime(2026, 2, 14, 9, 30)))
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_json_column_round_trips_and_updates(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(a_case(special_groups=[]))
        session.commit()
    with Session(engine) as session:
        case = session.get(CaseRecord, "110101-20260214-0001")
        assert case.special_groups == []
        case.special_groups = ["disabled", "minor"]  # reassigned, not mutated: no mutation tracking
        session.add(case)
        session.commit()
    with Session(engine) as session:
        assert session.get(CaseRecord, "110101-20260214-0001").special_groups == ["disabled", "minor"]


def test_intake_request_key_rejects_a_duplicate(engine: Engine) -> None:
    def request(case_id: str, owner: str = "op-1") -> IntakeRequest:
        return IntakeRequest(owner=owner, idempotency_key="k-1", case_id=case_id, fingerprint="f" * 64,
                             created_at=OPENED)

    with Session(engine) as session:
        session.add(request("110101-20260214-0001"))
        session.commit()
    with Session(engine) as session:
        session.add(request("110101-20260214-0002"))
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(engine) as session:
        assert session.get(IntakeRequest, ("op-1", "k-1")).case_id == "110101-20260214-0001"
        session.add(request("110101-20260214-0003", owner="op-2"))  # another user's key of that name
        session.commit()


def test_write_session_commits(engine: Engine) -> None:
    with write_session(engine) as session:
        session.add(a_case())
    with Session(engine) as session:
        assert session.get(CaseRecord, "110101-20260214-0001") is not None


def test_write_session_rolls_back_on_error(engine: Engine) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with write_session(engine) as session:
            session.add(a_case())
            session.flush()  # written inside the transaction...
            raise Boom
    with Session(engine) as session:  # ...and gone after the rollback
        assert session.get(CaseRecord, "110101-20260214-0001") is None
    with write_session(engine) as session:  # the engine is usable afterwards (no lock left behind)
        session.add(a_case())
    with Session(engine) as session:
        assert session.get(CaseRecord, "110101-20260214-0001") is not None


def test_processes_starting_together_create_the_schema_once(database_url: str) -> None:
    """The API and the worker start at the same moment on an empty database: both get a whole
    schema, neither fails on a table or index the other one just made."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from disputeflow.db.engine import create_schema, make_engine

    engines = [make_engine(database_url) for _ in range(4)]
    barrier = Barrier(len(engines))

    def start(engine: Engine) -> None:
        barrier.wait(timeout=30)
        create_schema(engine)

    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            for done in [pool.submit(start, engine) for engine in engines]:
                done.result(timeout=60)
        names = set(inspect(engines[0]).get_table_names())
        assert set(SQLModel.metadata.tables) <= names
        assert "ix_outbox_unsent" in {i["name"] for i in inspect(engines[0]).get_indexes("outbox")}
    finally:
        for engine in engines:
            engine.dispose()


def test_postgresql_plans_each_statement_with_its_own_values(postgres_url: str) -> None:
    """psycopg prepares a statement run five times on a connection, and PostgreSQL may then keep one
    plan for any values: a listing of a rare dispute type would walk every case. Every connection of
    the engine plans each statement with its values, after a rollback too (a SET in a transaction
    that rolls back would be undone); and costs a random page read as on SSDs (1.1) where nobody
    set it, and as set where somebody did (here ALTER DATABASE)."""
    from sqlalchemy.engine import make_url

    from disputeflow.db.engine import make_engine

    def planner(conn) -> tuple[str, str]:
        return (conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one(),
                conn.exec_driver_sql("SHOW random_page_cost").scalar_one())

    engine = make_engine(postgres_url)
    try:
        for _ in range(3):
            with engine.connect() as conn:
                assert planner(conn) == ("force_custom_plan", "1.1")
                conn.exec_driver_sql("SELECT 1")
                conn.rollback()
                assert planner(conn) == ("force_custom_plan", "1.1")
        with engine.connect() as a, engine.connect() as b:  # two connections of the pool
            assert planner(a) == planner(b) == ("force_custom_plan", "1.1")
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{make_url(postgres_url).database}" SET random_page_cost = 3')
    finally:
        engine.dispose()
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert planner(conn) == ("force_custom_plan", "3")
    finally:
        engine.dispose()
