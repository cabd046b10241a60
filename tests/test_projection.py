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
    AuditEntry, CaseEventRecord, CaseRecord, CaseTaskRecord, ClockRecord, ComplianceCount, Mediator, OutboxMessage,
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


def test_projected_walks_leave_rows_and_compliance_counters_exact(engine: Engine) -> None:
    """Random walks through the process (actions and time passing, breaches, pauses, extensions,
    closing), each change projected as the workflow does, with retries and late duplicates: the
    read model shows each case as it stands, and the compliance counters (kept by the projection
    itself, not by the ORM's flush hook) equal a recount of the clock rows."""
    import random

    from disputeflow.db import compliance
    from tests.domain.test_lifecycle_walks import LAWYER, MEDIATORS, WAITS, Walk

    notification_keys: set[str] = set()
    states = []
    for seed in range(8):
        rng = random.Random(seed)
        state, cal = opened_case(urgency=("normal", "urgent", "emergency")[seed % 3])
        state.case_id = f"370102-20261130-{seed:04d}"
        sent: list[Projection] = []

        def project(at: datetime, state: CaseState = state, sent: list[Projection] = sent,
                    rng: random.Random = rng) -> None:
            p = projection_of(state, since=state.projected_seq).model_copy(update={"updated_at": at})
            if not p.events and not p.notifications:
                return  # nothing changed: the workflow sends no snapshot
            if p.events:
                state.projected_seq = p.events[-1].seq
            notification_keys.update(n.key for n in state.outbox)
            state.outbox = []
            sent.append(p)
            with write_session(engine) as session:
                apply_projection(session, p, now=at)
            if rng.random() < 0.25:  # a retried activity, or an older snapshot arriving late
                with write_session(engine) as session:
                    assert apply_projection(session, rng.choice([q for q in sent if q.events]), now=at) == 0

        project(NOW)
        walk = Walk(state, cal)
        for _ in range(rng.randint(8, 30)):
            if state.closed:
                break
            if rng.random() < 0.7:
                allowed = walk.allowed()
                kinds = sorted(allowed)
                if len(kinds) > 1 and rng.random() < 0.9:
                    kinds.remove("withdraw")
                request = rng.choice(allowed[rng.choice(kinds)])
                walk.now += timedelta(seconds=1)
                named = (MEDIATORS[1] if request.command.model_dump().get("mediator_id")
                         else LAWYER if request.command.type == "assign_lawyer" else None)
                effects = lifecycle.apply(state, request, walk.now, cal, chosen=named)
                if effects.assign_mediator:
                    free = [m for m in MEDIATORS if m.id not in effects.exclude_mediators] + [None]
                    lifecycle.assign_mediator(state, rng.choice(free), walk.now, cal)
                if effects.assign_lawyer:
                    lifecycle.assign_lawyer(state, rng.choice([LAWYER, None]), walk.now, cal)
            else:
                walk.now += rng.choice(WAITS)
                lifecycle.fire_alarms(state, walk.now, cal)
            project(walk.now)
        states.append(state)

    assert {s.stage for s in states} >= {Stage.closed}
    with Session(engine) as session:
        for state in states:
            case = session.get(CaseRecord, state.case_id)
            assert (case.stage, case.breached, case.event_count) == (state.stage.value, state.breached,
                                                                     state.timeline[-1].seq)
            open_tasks = set(session.exec(select(CaseTaskRecord.task_id).where(
                CaseTaskRecord.case_id == state.case_id, CaseTaskRecord.status == "open")))
            assert open_tasks == {f"{state.case_id}:{t.key}" for t in lifecycle.open_tasks(state)}
            rows = {c.clock_id: c for c in session.exec(select(ClockRecord).where(ClockRecord.case_id == state.case_id))}
            assert set(rows) == {f"{state.case_id}:{c.clock_id}" for c in state.clocks}
            for clock in state.clocks:
                row = rows[f"{state.case_id}:{clock.clock_id}"]
                assert (row.status, row.due_at, row.breached, row.breached_at, row.ended_at) == \
                    (clock.status.value, clock.due_at, clock.breached, clock.breached_at, clock.ended_at)
            seqs = list(session.exec(select(CaseEventRecord.seq).where(CaseEventRecord.case_id == state.case_id)
                                     .order_by(CaseEventRecord.seq)))
            assert seqs == [e.seq for e in state.timeline]
        assert set(session.exec(select(OutboxMessage.dedupe_key))) == notification_keys
        report = verify_chain(session)
        assert report.ok and report.checked == sum(len(s.timeline) for s in states)

        recount = compliance.Counters()
        for row in session.connection().execute(select(ClockRecord.__table__)).mappings():
            recount.add_row(dict(row))
        columns = ("kind", "period", "clock", "region_code", "first_day", "last_day", "week", "month",
                   *compliance.COUNTS)
        kept = [{c: getattr(r, c) for c in columns} for r in session.exec(select(ComplianceCount))
                if any(getattr(r, c) for c in compliance.COUNTS)]
        def key(r: dict) -> tuple:
            return r["kind"], r["first_day"], r["clock"], r["region_code"]

        assert sorted(kept, key=key) == sorted(recount.rows(), key=key)
        assert any(r["breached_open"] or r["met_late"] for r in kept)  # the walks did breach
