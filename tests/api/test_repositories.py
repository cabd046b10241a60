"""The API's queries and intake bookkeeping on both databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from disputeflow.db import queries
from disputeflow.db.engine import write_session
from disputeflow.db.intake import CaseNumbers, IntakeKeyReused, claim_intake_key, next_case_id, release_intake_key
from disputeflow.db.models import CaseNumberCounter, CaseRecord, CaseTaskRecord, IntakeRequest
from disputeflow.domain.calendar import SHANGHAI

NOW = datetime(2026, 11, 30, 15, 59, tzinfo=timezone.utc)  # 23:59 in Shanghai


def _case(case_id: str, opened_at: datetime, **overrides) -> CaseRecord:
    data = dict(case_id=case_id, workflow_id=f"case-{case_id}", stage="triage", phase="triage", region_code="370102",
                channel="hotline", category="dispute", dispute_type="labour_wages", urgency="normal",
                caller_name="张三", caller_phone="+8613800138000", description="拖欠工资", opened_at=opened_at,
                updated_at=opened_at, policy_version="2026.1")
    return CaseRecord(**(data | overrides))


def test_case_numbers_count_per_region_and_shanghai_day(engine: Engine) -> None:
    with write_session(engine) as session:
        numbers = [next_case_id(session, region_code="370102", now=NOW) for _ in range(3)]
        numbers.append(next_case_id(session, region_code="370103", now=NOW))
        numbers.append(next_case_id(session, region_code="370102", now=NOW + timedelta(minutes=1)))  # next day there
    assert numbers == ["370102-20261130-0001", "370102-20261130-0002", "370102-20261130-0003",
                       "370103-20261130-0001", "370102-20261201-0001"]


def test_claiming_a_key(engine: Engine) -> None:
    with write_session(engine) as session:
        first = claim_intake_key(session, key="k", fingerprint="a" * 64, region_code="370102", now=NOW)
    with write_session(engine) as session:
        again = claim_intake_key(session, key="k", fingerprint="a" * 64, region_code="370102", now=NOW)
    assert first.created and not again.created and again.case_id == first.case_id
    with pytest.raises(IntakeKeyReused, match="different body") as refused, write_session(engine) as session:
        claim_intake_key(session, key="k", fingerprint="b" * 64, region_code="370102", now=NOW)
    assert refused.value.case_id == first.case_id and first.case_id not in str(refused.value)
    with write_session(engine) as session:
        release_intake_key(session, key="k", case_id="some-other-case")  # not its case: kept
    with write_session(engine) as session:
        assert session.get(IntakeRequest, ("", "k")) is not None
        release_intake_key(session, key="k", case_id=first.case_id)
    with Session(engine) as session:
        assert session.get(IntakeRequest, ("", "k")) is None


def test_concurrent_claims_of_one_key_agree(engine: Engine) -> None:
    results, errors = [], []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        try:
            with write_session(engine) as session:
                results.append(claim_intake_key(session, key="same", fingerprint="f" * 64, region_code="370102",
                                                now=NOW))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.case_id for r in results}) == 1 and sum(r.created for r in results) == 1
    with Session(engine) as session:
        assert len(session.exec(select(IntakeRequest)).all()) == 1


def test_listing_pages_by_keyset_and_searches_literally(engine: Engine) -> None:
    same_moment = NOW - timedelta(hours=1)
    with write_session(engine) as session:
        session.add(_case("A", same_moment, description="工资 100% 未付"))
        session.add(_case("B", same_moment, description="工资_拖欠", mediator_id="med-1"))
        session.add(_case("C", NOW, caller_name="Li Wei", breached=True))
        session.add(_case("D", NOW - timedelta(days=2), region_code="110105"))
    scope = queries.Scope(region_prefix="3701")
    with Session(engine) as session:
        seen, cursor = [], None
        while True:
            page = queries.list_cases(session, scope=scope, filters=queries.CaseFilters(), cursor=cursor, limit=1)
            seen += [r.case_id for r in page.items]
            if not (cursor := page.next_cursor):
                break
        assert seen == ["C", "B", "A"]  # newest first; a tie broken by case id
        search = lambda text, **kw: [r.case_id for r in queries.list_cases(  # noqa: E731
            session, scope=kw.pop("scope", scope), filters=queries.CaseFilters(text=text, **kw)).items]
        assert search("100%") == ["A"] and search("_拖") == ["B"] and search("%") == ["A"]
        assert search("li wei") == ["C"]  # case-insensitive
        assert search(None, breached=True) == ["C"]
        assert search(None, assignee_id="med-1") == ["B"]
        assert search(None, scope=queries.Scope(mediator_id="med-1")) == ["B"]
        day = NOW.astimezone(SHANGHAI).date()
        assert search(None, opened_from=day, opened_to=day) == ["C", "B", "A"]
        assert search(None, opened_to=day - timedelta(days=1)) == []
        assert search(None, opened_to=date.max) == ["C", "B", "A"]
        assert search(None, scope=queries.Scope(region_prefix="11")) == ["D"]
        for bad in ("not-a-cursor!", "bm9wZQ", "12.", ".X", "1" * 17 + ".X", queries.encode_cursor(_case("X", NOW)) + "\n"):
            with pytest.raises(queries.InvalidCursor):
                queries.list_cases(session, scope=scope, filters=queries.CaseFilters(), cursor=bad)


def test_open_tasks_soonest_due_first(engine: Engine) -> None:
    with write_session(engine) as session:
        session.add(_case("A", NOW))
        session.add(_case("B", NOW, region_code="110105"))
        for task_id, case_id, due, role, who, status in (
            ("A:1", "A", NOW + timedelta(days=2), "mediator", "med-1", "open"),
            ("A:2", "A", None, "mediator", "med-1", "open"),
            ("A:3", "A", NOW + timedelta(days=1), "mediator", "med-1", "open"),
            ("A:4", "A", NOW, "mediator", "med-1", "done"),
            ("A:5", "A", NOW, "operator", None, "open"),
            ("B:1", "B", NOW, "operator", None, "open"),
        ):
            session.add(CaseTaskRecord(task_id=task_id, case_id=case_id, kind="k", title="t", assignee_role=role,
                                       assignee_id=who, region_code={"A": "370102", "B": "110105"}[case_id],
                                       due_at=due, status=status, created_at=NOW))
    with Session(engine) as session:
        mine = queries.open_tasks(session, assignee_id="med-1")
        assert [t.task_id for t, _ in mine.items] == ["A:3", "A:1", "A:2"] and mine.total == 3
        page = queries.open_tasks(session, assignee_id="med-1", limit=1, offset=1)
        assert [t.task_id for t, _ in page.items] == ["A:1"] and page.total == 3
        # Every page, among the tasks with a due time, across to those without, or past them: one order.
        whole = ["A:3", "A:1", "A:2"]
        for limit in (1, 2, 3, 4):
            for offset in range(5):
                page = queries.open_tasks(session, assignee_id="med-1", limit=limit, offset=offset)
                assert [t.task_id for t, _ in page.items] == whole[offset:offset + limit], (limit, offset)
        ops = queries.open_tasks(session, role="operator", region_prefix="3701")
        assert [(t.task_id, c.case_id) for t, c in ops.items] == [("A:5", "A")]


def test_case_numbers_from_reserved_blocks_are_unique_in_order_and_write_once_per_block(engine: Engine) -> None:
    first, second = CaseNumbers(engine, block=4), CaseNumbers(engine, block=4)  # two API processes
    mine = [first.next(region_code="370102", now=NOW) for _ in range(4)]
    theirs = [second.next(region_code="370102", now=NOW) for _ in range(2)]
    mine.append(first.next(region_code="370102", now=NOW))
    day = NOW.astimezone(SHANGHAI).strftime("%Y%m%d")
    assert mine == [f"370102-{day}-{n:04d}" for n in (1, 2, 3, 4, 9)]  # 5-8 went to the second process
    assert theirs == [f"370102-{day}-{n:04d}" for n in (5, 6)]
    with Session(engine) as session:
        (counter,) = session.exec(select(CaseNumberCounter).where(CaseNumberCounter.region_code == "370102")).all()
    assert counter.last == 12  # three blocks reserved: three writes for seven numbers


def test_a_reserved_case_number_is_taken_without_waiting_and_none_when_the_block_is_used_up(engine: Engine) -> None:
    numbers = CaseNumbers(engine, block=2)
    day = NOW.astimezone(SHANGHAI).strftime("%Y%m%d")
    assert numbers.reserved(region_code="370102", now=NOW) is None  # nothing reserved yet: no database call here
    assert numbers.next(region_code="370102", now=NOW) == f"370102-{day}-0001"
    assert numbers.reserved(region_code="370102", now=NOW) == f"370102-{day}-0002"
    assert numbers.reserved(region_code="370102", now=NOW) is None  # used up
    assert numbers.reserved(region_code="370103", now=NOW) is None  # another region's block
    with numbers._lock:  # another thread reserving a block: no wait, the caller goes to `next`
        assert numbers.reserved(region_code="370102", now=NOW) is None
    assert numbers.next(region_code="370102", now=NOW) == f"370102-{day}-0003"


def test_the_duplicate_numbers_intake_reads_are_the_open_cases_of_the_caller(engine: Engine) -> None:
    phone = "+8613800138000"
    with Session(engine) as session:
        for n, (region, stage, who) in enumerate([("370102", "triage", phone), ("370103", "mediation", phone),
                                                  ("370102", "closed", phone), ("370102", "triage", "+8613900139000"),
                                                  ("370201", "triage", phone), ("370102", "triage", phone)]):
            session.add(_case(f"C{n}", NOW + timedelta(minutes=n), region_code=region, stage=stage, caller_phone=who))
        session.commit()
        for region in (None, "37", "3701", "370102", "44"):
            expected = [c.case_id for c in queries.open_cases_of_caller(session, phone=phone, region_prefix=region,
                                                                       exclude="C5")]
            assert queries.open_case_ids_of_caller(engine, phone=phone, region_prefix=region, exclude="C5") == expected
    assert expected == [] and queries.open_case_ids_of_caller(engine, phone=phone, region_prefix=None, exclude="C5") \
        == ["C4", "C1", "C0"]
    with pytest.raises(ValueError):
        queries.open_case_ids_of_caller(engine, phone=phone, region_prefix="37%", exclude="C5")
