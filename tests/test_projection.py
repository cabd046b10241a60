"""The projection activity's database writes are idempotent, and people are chosen by region, expertise and load."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.case import CaseActivities
from disputeflow.contracts import PinPolicyInput, Projection, workflow_id_for
from disputeflow.db.audit import verify_chain
from disputeflow.db.cases import apply_projection
from disputeflow.db.engine import write_session
from disputeflow.db.models import (
    AuditEntry, CaseEventRecord, CaseRecord, CaseTaskRecord, ClockRecord, Mediator, OutboxMessage,
)
from disputeflow.db.reference import choose_lawyer, choose_mediator, seed_reference
from disputeflow.domain import lifecycle
from disputeflow.domain.actions import ActionRequest
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import CaseState
from disputeflow.domain.enums import Stage
from disputeflow.domain.policy import CaseFacts
from disputeflow.settings import DEFAULT_POLICY_FILE, DEFAULT_REFERENCE_FILE
from tests.workflows.conftest import OPERATOR, make_intake

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)


def opened_case(urgency: str = "emergency") -> tuple[CaseState, BusinessCalendar]:
    intake = make_intake(urgency=urgency)
    facts = CaseFacts(region_code=intake.region_code, category=intake.category, dispute_type=intake.dispute_type,
                      urgency=intake.urgency, special_groups=intake.special_groups)
    policy = CaseActivities(None, DEFAULT_POLICY_FILE).pin_case_policy(
        PinPolicyInput(facts=facts, opened_on=date(2026, 11, 30)))
    cal = BusinessCalendar(policy.calendar)
    return lifecycle.open_case("370102-20261130-0001", intake, policy, NOW, cal), cal


def projection_of(state: CaseState, since: int = 0) -> Projection:
    return Projection(
        case_id=state.case_id, workflow_id=workflow_id_for(state.case_id), intake=state.intake, stage=state.stage,
        phase=state.phase.value, mediator_id=None, lawyer_id=None, opened_at=state.opened_at, updated_at=NOW,
        closed_at=state.closed_at, final_outcome=state.final_outcome, satisfaction=state.satisfaction,
        policy_version=state.policy.version, breached=state.breached, tasks=lifecycle.open_tasks(state),
        clocks=state.clocks, events=[e for e in state.timeline if e.seq > since], notifications=state.outbox,
    )


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {model.__tablename__: session.exec(select(func.count()).select_from(model)).one()
                for model in (CaseRecord, CaseTaskRecord, ClockRecord, CaseEventRecord, OutboxMessage, AuditEntry)}


def test_applying_the_same_projection_twice_writes_nothing_twice(engine: Engine) -> None:
    state, cal = opened_case()
    first = projection_of(state)
    with write_session(engine) as session:
        assert apply_projection(session, first, now=NOW) == len(state.timeline)
    before = counts(engine)
    with write_session(engine) as session:  # a retried activity
        assert apply_projection(session, first, now=NOW) == 0
    assert counts(engine) == before
    assert before["outbox"] == 1  # the emergency notice, once

    # the case moves on; the next projection closes the triage task and adds the new events only
    seen = state.timeline[-1].seq
    lifecycle.apply(state, ActionRequest.model_validate({
        "request_id": "r1", "actor": OPERATOR.model_dump(),
        "command": {"type": "refer", "body": "police", "organisation": "历下公安分局"}}), NOW + timedelta(minutes=5), cal)
    with write_session(engine) as session:
        apply_projection(session, projection_of(state, since=seen), now=NOW)
        # a late duplicate of the first projection must not roll the case back
        apply_projection(session, first, now=NOW)
    with Session(engine) as session:
        case = session.get(CaseRecord, state.case_id)
        assert case.stage == "referred" and case.event_count == state.timeline[-1].seq
        tasks = {t.kind: t.status for t in session.exec(select(CaseTaskRecord))}
        assert tasks == {"triage": "done", "confirm_referral": "open"}
        clocks = {c.name: c.status for c in session.exec(select(ClockRecord))}
        assert clocks["emergency_response"] == "met" and clocks["referral_acceptance"] == "running"
        assert [e.seq for e in session.exec(select(CaseEventRecord).order_by(CaseEventRecord.seq))] == \
            [e.seq for e in state.timeline]
        assert verify_chain(session).ok


def test_mediator_of_the_region_and_expertise_with_the_least_load(engine: Engine) -> None:
    with write_session(engine) as session:
        seed_reference(session, DEFAULT_REFERENCE_FILE)
    with Session(engine) as session:
        first = choose_mediator(session, region_code="370102", dispute_type="labour_wages", exclude=[])
        assert first.id == "med-370102-01"  # equal load: the lowest id
        # give med-370102-01 an open mediation: the next choice avoids it
        state, _ = opened_case(urgency="normal")
        p = projection_of(state).model_copy(update={"stage": Stage.mediation, "mediator_id": first.id})
    with write_session(engine) as session:
        apply_projection(session, p, now=NOW)
    with Session(engine) as session:
        assert choose_mediator(session, region_code="370102", dispute_type="labour_wages", exclude=[]).id == "med-370102-02"
        # expertise: only med-370102-03 handles medical disputes there
        assert choose_mediator(session, region_code="370102", dispute_type="medical", exclude=[]).id == "med-370102-03"
        assert choose_mediator(session, region_code="370102", dispute_type="medical", exclude=["med-370102-03"]) is None
        assert choose_mediator(session, region_code="650102", dispute_type="labour_wages", exclude=[]) is None
        # lawyers: specialists first
        assert choose_lawyer(session, region_code="370102", dispute_type="medical", exclude=[]).id == "law-370102-02"
    with write_session(engine) as session:
        session.get(Mediator, "med-370102-03").active = False
    with Session(engine) as session:
        assert choose_mediator(session, region_code="370102", dispute_type="medical", exclude=[]) is None
