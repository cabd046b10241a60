"""Supervisor views on both databases: breached clocks, clocks at risk, compliance figures and CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from disputeflow.db.engine import write_session
from disputeflow.db.models import CaseRecord, ClockRecord
from disputeflow.db.reports import (
    ClockRow,
    ComplianceRow,
    at_risk_clocks,
    breached_clocks,
    compliance,
    compliance_csv,
    period_of,
)
from disputeflow.domain.calendar import SHANGHAI

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)
MEDIATOR = "med-370102-01"


def sh(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


STAGE_OF = {
    "triage_response": "triage",
    "emergency_response": "triage",
    "referral_acceptance": "referred",
    "mediation_conclusion": "mediation",
    "legal_aid_decision": "legal_aid_review",
    "escalation_response": "escalated",
}

# key: (clock name, region, started, due, status, breached_at, met_at, extra fields)
CLOCKS: dict[str, tuple] = {
    # November, Lixia (370102)
    "A": ("mediation_conclusion", "370102", sh(11, 1, 10), sh(12, 1, 10), "running", None, None,
          {"warnings_fired": 1, "assignee_id": MEDIATOR, "next_warning_at": sh(11, 25, 10)}),
    "B": ("triage_response", "370102", sh(11, 19), sh(11, 20, 17, 30), "running", None, None, {}),
    "C": ("emergency_response", "370102", sh(11, 20, 8), sh(11, 20, 9), "running", sh(11, 20, 9), None,
          {"urgency": "emergency", "warnings_fired": 1}),
    "D": ("legal_aid_decision", "370102", sh(11, 3), sh(11, 12, 17, 30), "running", sh(11, 12, 17, 30), None,
          {"category": "legal_aid"}),
    "E": ("triage_response", "370102", sh(11, 2), sh(11, 3, 17, 30), "met", None, sh(11, 2, 15), {}),
    "F": ("triage_response", "370102", sh(11, 5), sh(11, 6, 17, 30), "met", sh(11, 6, 17, 30), sh(11, 9, 11), {}),
    "G": ("triage_response", "370102", sh(11, 10), sh(11, 11, 17, 30), "cancelled", None, None, {}),
    "H": ("referral_acceptance", "370102", sh(11, 18), sh(11, 25, 17, 30), "running", None, None, {}),
    "I": ("legal_aid_decision", "370102", sh(11, 16), sh(11, 21, 9), "paused", None, None,
          {"paused_at": sh(11, 18), "pause_reason": "awaiting_materials", "category": "legal_aid"}),
    # 00:30 in Shanghai on 1 November is still 31 October in UTC: it belongs to November.
    "M": ("triage_response", "370102", sh(11, 1, 0, 30), sh(11, 3, 17, 30), "met", None, sh(11, 2, 10), {}),
    # November, Shinan, Qingdao (370202)
    "J": ("triage_response", "370202", sh(11, 14), sh(11, 15, 17, 30), "running", sh(11, 15, 17, 30), None, {}),
    "K": ("triage_response", "370202", sh(11, 4), sh(11, 5, 17, 30), "met", None, sh(11, 5, 9), {}),
    "R": ("escalation_response", "370202", sh(11, 19, 14), sh(11, 20, 12), "running", None, None,
          {"warnings_fired": 1}),
    # November, Shizhong, Jinan (370103): same city as 370102
    "S": ("triage_response", "370103", sh(11, 6), sh(11, 9, 17, 30), "met", None, sh(11, 9, 10), {}),
    # met after its due time, before the breach timer fired: late all the same
    "U": ("triage_response", "370103", sh(11, 6), sh(11, 9, 17, 30), "met", None, sh(11, 9, 17, 31), {}),
    # October, Lixia
    "L": ("mediation_conclusion", "370102", sh(10, 10), sh(11, 9), "met", sh(11, 9), sh(11, 9),
          {"assignee_id": MEDIATOR, "warnings_fired": 2}),  # breached, escalated: ended as met, late
    "N": ("triage_response", "370102", sh(10, 20), sh(10, 21, 17, 30), "met", None, sh(10, 21, 9), {}),
    # October, Shinan
    "O": ("triage_response", "370202", sh(10, 12), sh(10, 13, 17, 30), "met", sh(10, 13, 17, 30), sh(10, 14), {}),
    # breached on 4 November, then extended by 30 days: still breached, due later
    "P": ("mediation_conclusion", "370202", sh(10, 5), sh(12, 4), "running", sh(11, 4), None, {"warnings_fired": 2}),
    # September: outside the reporting range
    "Q": ("triage_response", "370102", sh(9, 30, 23, 59), sh(10, 9, 17, 30), "met", None, sh(10, 8), {}),
}


def _case(key: str, region: str, opened: datetime, urgency: str, category: str) -> CaseRecord:
    return CaseRecord(
        case_id=f"case-{key}", workflow_id=f"case-case-{key}", stage="triage", phase="triage",
        region_code=region, channel="hotline", category=category, dispute_type="labour_wages",
        urgency=urgency, caller_name="张三", caller_phone="+8613800138000", description="拖欠工资",
        opened_at=opened, updated_at=opened, policy_version="2026.1",
    )


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    with write_session(engine) as session:
        for key, (name, region, started, due, status, breached_at, met_at, extra) in CLOCKS.items():
            extra = dict(extra)
            urgency = extra.pop("urgency", "normal")
            category = extra.pop("category", "dispute")
            session.add(_case(key, region, started, urgency, category))
            session.add(ClockRecord(
                clock_id=f"case-{key}:{name}-1", case_id=f"case-{key}", name=name, title=name.replace("_", " "),
                stage=STAGE_OF[name], region_code=region, unit="working_days", target=1, started_at=started,
                due_at=due, status=status, breached=breached_at is not None, breached_at=breached_at,
                met_at=met_at, policy_version="2026.1", **extra,
            ))
    return engine


def keys(rows: list[ClockRow]) -> list[str]:
    return [row.case_id.removeprefix("case-") for row in rows]


# -- Breached ------------------------------------------------------------------------------


def test_breached_open_clocks_oldest_overdue_first(seeded: Engine) -> None:
    with Session(seeded) as session:
        rows = breached_clocks(session)
    assert keys(rows) == ["D", "J", "C", "P"]  # P was extended after its breach: due last, still listed
    first = rows[0]
    assert first.clock_id == "case-D:legal_aid_decision-1" and first.name == "legal_aid_decision"
    assert first.stage == "legal_aid_review" and first.region_code == "370102" and first.status == "running"
    assert first.breached and first.breached_at == sh(11, 12, 17, 30) and first.due_at == sh(11, 12, 17, 30)
    assert first.category == "legal_aid" and first.urgency == "normal"
    assert rows[2].urgency == "emergency" and rows[2].warnings_fired == 1
    assert rows[3].due_at == sh(12, 4) and rows[3].breached_at == sh(11, 4)
    assert all(row.started_at.utcoffset() == timedelta(0) for row in rows)  # aware, UTC


def test_breached_with_ended_clocks(seeded: Engine) -> None:
    with Session(seeded) as session:
        rows = breached_clocks(session, include_ended=True)
    assert keys(rows) == ["O", "F", "L", "D", "J", "C", "P"]
    assert {row.status for row in rows if row.case_id in ("case-O", "case-F", "case-L")} == {"met"}
    assert rows[1].met_at == sh(11, 9, 11)


def test_breached_filters(seeded: Engine) -> None:
    with Session(seeded) as session:
        assert keys(breached_clocks(session, region_prefix="3701")) == ["D", "C"]
        assert keys(breached_clocks(session, region_prefix="37")) == ["D", "J", "C", "P"]
        assert keys(breached_clocks(session, region_prefix="370202")) == ["J", "P"]
        assert keys(breached_clocks(session, region_prefix="11")) == []
        assert keys(breached_clocks(session, stage="triage")) == ["J", "C"]
        assert keys(breached_clocks(session, clock="emergency_response")) == ["C"]
        assert keys(breached_clocks(session, clock="mediation_conclusion", include_ended=True)) == ["L", "P"]
        assert keys(breached_clocks(session, assignee_id=MEDIATOR)) == []
        assert keys(breached_clocks(session, assignee_id=MEDIATOR, include_ended=True)) == ["L"]
        assert keys(breached_clocks(session, region_prefix="3702", stage="triage")) == ["J"]


def test_breached_paging(seeded: Engine) -> None:
    with Session(seeded) as session:
        assert keys(breached_clocks(session, limit=2)) == ["D", "J"]
        assert keys(breached_clocks(session, limit=2, offset=1)) == ["J", "C"]
        assert keys(breached_clocks(session, limit=2, offset=2)) == ["C", "P"]
        assert keys(breached_clocks(session, limit=2, offset=4)) == []


def test_malformed_arguments_are_refused(seeded: Engine) -> None:
    with Session(seeded) as session:
        for bad in ("3", "370", "37%", "37_1", "３７"):
            with pytest.raises(ValueError, match="region prefix"):
                breached_clocks(session, region_prefix=bad)
        with pytest.raises(ValueError, match="unknown stage"):
            breached_clocks(session, stage="nowhere")
        with pytest.raises(ValueError, match="limit"):
            breached_clocks(session, limit=0)
        with pytest.raises(ValueError, match="limit"):
            at_risk_clocks(session, now=NOW, limit=10_000)
        with pytest.raises(ValueError, match="offset"):
            breached_clocks(session, offset=-1)
        with pytest.raises(ValueError, match="naive"):
            at_risk_clocks(session, now=NOW.replace(tzinfo=None))
        with pytest.raises(ValueError, match="within"):
            at_risk_clocks(session, now=NOW, within=timedelta(hours=-1))


# -- At risk -------------------------------------------------------------------------------


def test_at_risk_warned_or_due_within_a_day(seeded: Engine) -> None:
    with Session(seeded) as session:
        rows = at_risk_clocks(session, now=NOW)
    # R: warned, due at noon; B: due this afternoon; I: paused, due tomorrow morning; A: warned.
    # Not C, D, J, P (breached), not H (due in 5 days, no warning), nothing ended.
    assert keys(rows) == ["R", "B", "I", "A"]
    paused = rows[2]
    assert paused.status == "paused" and paused.paused_at == sh(11, 18) and paused.pause_reason == "awaiting_materials"
    assert rows[3].next_warning_at == sh(11, 25, 10) and rows[3].assignee_id == MEDIATOR


def test_at_risk_window_and_filters(seeded: Engine) -> None:
    with Session(seeded) as session:
        assert keys(at_risk_clocks(session, now=NOW, within=timedelta(hours=1))) == ["R", "A"]
        assert keys(at_risk_clocks(session, now=NOW, within=timedelta(0))) == ["R", "A"]
        assert keys(at_risk_clocks(session, now=NOW, within=timedelta(days=10))) == ["R", "B", "I", "H", "A"]
        # a day later, B and I are past due without a breach recorded yet: still at risk, not breached
        assert keys(at_risk_clocks(session, now=NOW + timedelta(days=1), within=timedelta(0))) == ["R", "B", "I", "A"]
        assert keys(at_risk_clocks(session, now=NOW, region_prefix="3702")) == ["R"]
        assert keys(at_risk_clocks(session, now=NOW, region_prefix="370102")) == ["B", "I", "A"]
        assert keys(at_risk_clocks(session, now=NOW, stage="mediation")) == ["A"]
        assert keys(at_risk_clocks(session, now=NOW, assignee_id=MEDIATOR)) == ["A"]
        assert keys(at_risk_clocks(session, now=NOW, clock="triage_response")) == ["B"]
        assert keys(at_risk_clocks(session, now=NOW, limit=2, offset=1)) == ["B", "I"]
        # Every page, whether it ends among the clocks due soon, across them to the warned ones
        # due later, or wholly among those: the same order as one whole list.
        whole = keys(at_risk_clocks(session, now=NOW, within=timedelta(hours=8)))
        assert whole == ["R", "B", "A"]  # R and B due within the window, A warned and due later
        for limit in (1, 2, 3, 4):
            for offset in range(5):
                page = keys(at_risk_clocks(session, now=NOW, within=timedelta(hours=8), limit=limit, offset=offset))
                assert page == whole[offset:offset + limit], (limit, offset)
        # `now` in any zone means the same instant
        assert keys(at_risk_clocks(session, now=NOW.astimezone(UTC))) == ["R", "B", "I", "A"]


# -- Compliance ----------------------------------------------------------------------------


def counts(row: ComplianceRow) -> tuple:
    return (row.clock, row.region_code, row.period, row.started, row.met_on_time, row.met_late,
            row.breached_open, row.open_on_time, row.cancelled, row.cancelled_after_breach, row.compliance_rate)


def test_compliance_by_county_and_month(seeded: Engine) -> None:
    with Session(seeded) as session:
        rows = compliance(session, start=date(2026, 10, 1), end=date(2026, 11, 30))
    assert [counts(r) for r in rows] == [
        # clock, region, period, started, on time, late, breached open, open on time, cancelled,
        # cancelled after breach, rate
        ("emergency_response", "370102", "2026-11", 1, 0, 0, 1, 0, 0, 0, 0.0),
        ("escalation_response", "370202", "2026-11", 1, 0, 0, 0, 1, 0, 0, None),
        ("legal_aid_decision", "370102", "2026-11", 2, 0, 0, 1, 1, 0, 0, 0.0),
        ("mediation_conclusion", "370102", "2026-10", 1, 0, 1, 0, 0, 0, 0, 0.0),
        ("mediation_conclusion", "370102", "2026-11", 1, 0, 0, 0, 1, 0, 0, None),
        ("mediation_conclusion", "370202", "2026-10", 1, 0, 0, 1, 0, 0, 0, 0.0),
        ("referral_acceptance", "370102", "2026-11", 1, 0, 0, 0, 1, 0, 0, None),
        ("triage_response", "370102", "2026-10", 1, 1, 0, 0, 0, 0, 0, 1.0),
        ("triage_response", "370102", "2026-11", 5, 2, 1, 0, 1, 1, 0, pytest.approx(2 / 3)),
        ("triage_response", "370103", "2026-11", 2, 1, 1, 0, 0, 0, 0, 0.5),
        ("triage_response", "370202", "2026-10", 1, 0, 1, 0, 0, 0, 0, 0.0),
        ("triage_response", "370202", "2026-11", 2, 1, 0, 1, 0, 0, 0, 0.5),
    ]
    for row in rows:  # the outcomes partition the clocks started
        assert row.started == (row.met_on_time + row.met_late + row.breached_open + row.open_on_time
                               + row.cancelled + row.cancelled_after_breach)


def test_a_breach_still_counts_when_the_case_is_withdrawn_afterwards(engine: Engine) -> None:
    """Withdrawing a case must not wash a breach out of the figures: cancelled after its due time is
    rated (as a failure), whether its breach had fired or not; cancelled in time is not rated."""
    ended = {
        "W1": ("cancelled", sh(11, 13, 17, 30), None, sh(11, 14)),  # breached, then withdrawn
        "W2": ("cancelled", None, None, sh(11, 13, 9)),  # withdrawn in time
        "W3": ("met", None, sh(11, 13, 10), sh(11, 13, 10)),  # met on time
        # withdrawn a minute after the due time, before the breach fired: the deadline was missed
        "W4": ("cancelled", None, None, sh(11, 13, 17, 31)),
    }
    with write_session(engine) as session:
        for key, (status, breached_at, met_at, ended_at) in ended.items():
            session.add(_case(key, "370105", sh(11, 12), "normal", "dispute"))
            session.add(ClockRecord(
                clock_id=f"case-{key}:triage_response-1", case_id=f"case-{key}", name="triage_response",
                title="triage response", stage="triage", region_code="370105", unit="working_days", target=1,
                started_at=sh(11, 12), due_at=sh(11, 13, 17, 30), status=status, breached=breached_at is not None,
                breached_at=breached_at, met_at=met_at, ended_at=ended_at, policy_version="2026.1",
            ))
    with Session(engine) as session:
        (row,) = compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert counts(row) == ("triage_response", "370105", "2026-11", 4, 1, 0, 0, 0, 1, 2, 1 / 3)
    assert compliance_csv([row]).splitlines()[1] == "triage_response,370105,2026-11,4,1,0,0,0,1,0.3333,2"


def test_compliance_by_city_and_province(seeded: Engine) -> None:
    with Session(seeded) as session:
        city = compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30), group_by_region_level=4,
                          region_prefix="37")
        province = compliance(session, start=date(2026, 10, 1), end=date(2026, 11, 30), group_by_region_level=2,
                              region_prefix="3702")
    triage = [counts(r) for r in city if r.clock == "triage_response"]
    assert triage == [
        ("triage_response", "3701", "2026-11", 7, 3, 2, 0, 1, 1, 0, 0.6),
        ("triage_response", "3702", "2026-11", 2, 1, 0, 1, 0, 0, 0, 0.5),
    ]
    assert [counts(r) for r in province] == [
        ("escalation_response", "37", "2026-11", 1, 0, 0, 0, 1, 0, 0, None),
        ("mediation_conclusion", "37", "2026-10", 1, 0, 0, 1, 0, 0, 0, 0.0),
        ("triage_response", "37", "2026-10", 1, 0, 1, 0, 0, 0, 0, 0.0),
        ("triage_response", "37", "2026-11", 2, 1, 0, 1, 0, 0, 0, 0.5),
    ]


def test_compliance_periods_use_shanghai_dates(seeded: Engine) -> None:
    with Session(seeded) as session:
        first_of_november = compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 1), period="day")
        last_of_october = compliance(session, start=date(2026, 10, 31), end=date(2026, 10, 31), period="day")
        september = compliance(session, start=date(2026, 9, 30), end=date(2026, 9, 30), period="day")
        weeks = compliance(session, start=date(2026, 10, 1), end=date(2026, 11, 30), period="week",
                           region_prefix="370102")
    # M opened at 00:30 on 1 November in Shanghai (16:30 on 31 October in UTC); A at 10:00 that day
    assert [(r.clock, r.period, r.started) for r in first_of_november] == [
        ("mediation_conclusion", "2026-11-01", 1), ("triage_response", "2026-11-01", 1)]
    assert last_of_october == []
    assert [(r.clock, r.period, r.met_on_time) for r in september] == [("triage_response", "2026-09-30", 1)]
    triage_weeks = [(r.period, r.started) for r in weeks if r.clock == "triage_response"]
    # N (20 Oct) W43; M (1 Nov, a Sunday) W44; E (2 Nov) and F (5 Nov) W45; G (10 Nov) W46; B (19 Nov) W47
    assert triage_weeks == [("2026-W43", 1), ("2026-W44", 1), ("2026-W45", 2), ("2026-W46", 1), ("2026-W47", 1)]


def test_compliance_arguments(seeded: Engine) -> None:
    with Session(seeded) as session:
        assert compliance(session, start=date(2025, 1, 1), end=date(2025, 12, 31)) == []
        with pytest.raises(ValueError, match="before start"):
            compliance(session, start=date(2026, 11, 30), end=date(2026, 11, 1))
        with pytest.raises(ValueError, match="period"):
            compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30), period="year")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="region_level"):
            compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30), group_by_region_level=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="region prefix"):
            compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30), region_prefix="37%")


def test_period_of_iso_week_year() -> None:
    assert period_of(datetime(2027, 1, 1, 12, tzinfo=SHANGHAI), "week") == "2026-W53"
    # 16:30 UTC on 31 December is 00:30 on 1 January in Shanghai
    new_year = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
    assert (period_of(new_year, "day"), period_of(new_year, "week"), period_of(new_year, "month")) == (
        "2027-01-01", "2026-W53", "2027-01")


# -- CSV -----------------------------------------------------------------------------------


def test_compliance_csv(seeded: Engine) -> None:
    with Session(seeded) as session:
        rows = compliance(session, start=date(2026, 11, 1), end=date(2026, 11, 30), group_by_region_level=4)
    text = compliance_csv(rows)
    assert text == (
        "clock,region_code,period,started,met_on_time,met_late,breached_open,open_on_time,cancelled,compliance_rate,cancelled_after_breach\r\n"
        "emergency_response,3701,2026-11,1,0,0,1,0,0,0.0000,0\r\n"
        "escalation_response,3702,2026-11,1,0,0,0,1,0,,0\r\n"
        "legal_aid_decision,3701,2026-11,2,0,0,1,1,0,0.0000,0\r\n"
        "mediation_conclusion,3701,2026-11,1,0,0,0,1,0,,0\r\n"
        "referral_acceptance,3701,2026-11,1,0,0,0,1,0,,0\r\n"
        "triage_response,3701,2026-11,7,3,2,0,1,1,0.6000,0\r\n"
        "triage_response,3702,2026-11,2,1,0,1,0,0,0.5000,0\r\n"
    )


def test_compliance_csv_rates_and_injection() -> None:
    rows = [
        ComplianceRow(clock="=HYPERLINK(\"http://x\",\"y\")", region_code="+37", period="-1", started=3,
                      met_on_time=2, met_late=1, compliance_rate=2 / 3),
        ComplianceRow(clock="@SUM(A1:A9)", region_code="\t37", period="2026-11", started=1, met_on_time=1,
                      compliance_rate=1.0),
        ComplianceRow(clock="调解期限", region_code="37", period="2026-11"),
    ]
    assert compliance_csv(rows) == (
        "clock,region_code,period,started,met_on_time,met_late,breached_open,open_on_time,cancelled,compliance_rate,cancelled_after_breach\r\n"
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",'+37,'-1,3,2,1,0,0,0,0.6667,0\r\n"
        "'@SUM(A1:A9),'\t37,2026-11,1,1,0,0,0,0,1.0000,0\r\n"
        "调解期限,37,2026-11,0,0,0,0,0,0,,0\r\n"
    )
    assert compliance_csv([]) == (
        "clock,region_code,period,started,met_on_time,met_late,breached_open,open_on_time,cancelled,compliance_rate,cancelled_after_breach\r\n"
    )
