"""SLA clocks on the time-skipping server: each alarm once, pauses, resumptions and extensions,
and the clock rows of the read model. (The plain warn-then-escalate path is in test_paths.py.)"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError

from disputeflow.db.models import ClockRecord, OutboxMessage
from disputeflow.domain.actions import Actor
from disputeflow.domain.case import CaseView
from disputeflow.domain.clocks import Clock
from tests.workflows.conftest import OPERATOR, SUPERVISOR, CaseDriver, mediator, read_model_back, read_model_down

MINUTE = timedelta(minutes=1)


def clock_named(view: CaseView, name: str) -> Clock:
    return next(c for c in view.clocks if c.name == name)


def clock_by_id(view: CaseView, clock_id: str) -> Clock:
    return next(c for c in view.clocks if c.clock_id == clock_id)


def alarms(view: CaseView, clock_id: str) -> list[tuple[str, float | None]]:
    return [(e.type, e.data.get("fraction")) for e in view.timeline
            if e.data.get("clock_id") == clock_id and e.type in ("clock_warning", "clock_breached")]


def clock_row(driver: CaseDriver, case_id: str, clock_id: str) -> ClockRecord:
    with Session(driver.engine) as session:
        row = session.get(ClockRecord, f"{case_id}:{clock_id}")
    assert row is not None, f"clock {clock_id} of case {case_id} was never projected"
    return row


def outbox_kinds(driver: CaseDriver, case_id: str) -> Counter:
    with Session(driver.engine) as session:
        return Counter(m.kind for m in session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)))


async def history_length(handle: WorkflowHandle) -> int:
    return len((await handle.fetch_history()).events)


async def refused(driver: CaseDriver, handle: WorkflowHandle, actor: Actor, command: dict) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await driver.act(handle, actor, command, request_id=uuid.uuid4().hex)
    return str(caught.value.cause)


async def in_mediation(driver: CaseDriver) -> tuple[WorkflowHandle, CaseView, Clock]:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    assert view.stage == "mediation" and view.mediator is not None
    return handle, view, clock_named(view, "mediation_conclusion")


async def test_each_alarm_fires_once_and_never_again(driver: CaseDriver) -> None:
    """50% and 80% warnings and the breach, once each, however long the case then waits: no storms."""
    handle, view, clock = await in_mediation(driver)
    case_id, med = view.case_id, view.mediator.id
    assert [(w.fraction, w.at - clock.started_at) for w in clock.warnings] == [
        (0.5, timedelta(days=15)), (0.8, timedelta(days=24))]
    assert clock.due_at - clock.started_at == timedelta(days=30)

    await driver.advance(timedelta(days=15) - MINUTE)
    assert alarms(await driver.view(handle), clock.clock_id) == []
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.warnings_fired, row.next_warning_at) == (0, clock.warnings[0].at)

    await driver.advance(2 * MINUTE)  # the 50% warning, to the assigned mediator
    view = await driver.view(handle)
    assert alarms(view, clock.clock_id) == [("clock_warning", 0.5)]
    warning = next(e for e in view.timeline if e.type == "clock_warning")
    assert clock.warnings[0].at <= warning.at < clock.warnings[0].at + MINUTE
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.warnings_fired, row.next_warning_at, row.breached) == (1, clock.warnings[1].at, False)
    with Session(driver.engine) as session:
        sent = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                                        OutboxMessage.kind == "deadline_warning")).one()
    assert (sent.recipient_role, sent.recipient_id) == ("mediator", med)

    await driver.advance(timedelta(days=16))  # past the 80% warning and the due time: escalated
    view = await driver.view(handle)
    assert view.stage == "escalated" and view.escalation.reason == "deadline missed: Conclude mediation"
    breach = next(e for e in view.timeline if e.type == "clock_breached")
    assert clock.due_at <= breach.at < clock.due_at + MINUTE
    escalation = clock_named(view, "escalation_response")
    assert escalation.started_at == breach.at and escalation.open

    # The escalation's own clock (notify only) breaches and keeps running; then months pass.
    await driver.advance(timedelta(days=60))
    length = await history_length(handle)
    await driver.advance(timedelta(days=90))
    assert await history_length(handle) == length, "an idle case must not wake up: no timers, no tasks"
    view = await driver.view(handle)
    assert view.stage == "escalated"
    assert alarms(view, clock.clock_id) == [("clock_warning", 0.5), ("clock_warning", 0.8), ("clock_breached", None)]
    assert alarms(view, escalation.clock_id) == [
        ("clock_warning", 0.5), ("clock_warning", 0.8), ("clock_breached", None)]
    types = Counter(e.type for e in view.timeline)
    assert (types["clock_warning"], types["clock_breached"], types["escalated"]) == (4, 2, 1)
    assert driver.event_types(case_id) == [e.type for e in view.timeline]
    # one notification per threshold and per breach, one for the escalation, one for the assignment
    assert outbox_kinds(driver, case_id) == Counter(
        {"deadline_warning": 4, "deadline_breached": 2, "case_escalated": 1, "case_assigned": 1})

    ended = clock_row(driver, case_id, clock.clock_id)
    assert (ended.status, ended.breached, ended.breached_at, ended.due_at) == ("met", True, breach.at, clock.due_at)
    assert (ended.warnings_fired, ended.next_warning_at, ended.met_at) == (2, None, breach.at)
    running = clock_row(driver, case_id, escalation.clock_id)
    assert (running.status, running.breached, running.warnings_fired, running.next_warning_at) == (
        "running", True, 2, None)
    assert running.breached_at == clock_by_id(view, escalation.clock_id).breached_at
    record = driver.record(case_id)
    assert record.stage == "escalated" and record.breached is True
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def test_pause_silences_the_clock_and_resume_moves_it_by_the_paused_time(driver: CaseDriver) -> None:
    handle, view, clock = await in_mediation(driver)
    case_id = view.case_id
    await driver.advance(timedelta(days=10))
    view = await driver.act(handle, SUPERVISOR, {"type": "pause_clock", "clock_id": clock.clock_id,
                                                 "reason": "awaiting_party", "note": "申请人住院，暂无法参加调解"})
    paused = clock_by_id(view, clock.clock_id)
    pause = paused.pauses[-1]
    assert paused.status == "paused" and pause.reason == "awaiting_party" and pause.ended_at is None
    assert paused.due_at == clock.due_at  # a pause moves nothing until it ends
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.status, row.paused_at, row.pause_reason, row.due_at) == (
        "paused", pause.started_at, "awaiting_party", clock.due_at)
    assert (await refused(driver, handle, SUPERVISOR, {"type": "pause_clock", "clock_id": clock.clock_id,
                                                       "reason": "awaiting_party"})).endswith("is already paused")

    await driver.advance(timedelta(days=45))  # far past both warnings and the original due time
    view = await driver.view(handle)
    assert view.stage == "mediation" and not view.breached
    assert alarms(view, clock.clock_id) == []
    assert outbox_kinds(driver, case_id) == Counter({"case_assigned": 1})

    view = await driver.act(handle, SUPERVISOR, {"type": "resume_clock", "clock_id": clock.clock_id,
                                                 "note": "申请人已出院"})
    resumed = clock_by_id(view, clock.clock_id)
    ended = resumed.pauses[-1]
    paused_for = ended.ended_at - ended.started_at
    assert paused_for >= timedelta(days=45)
    assert resumed.status == "running"
    assert resumed.due_at == clock.due_at + paused_for  # a calendar clock: exactly the paused time
    assert [w.at for w in resumed.warnings] == [w.at + paused_for for w in clock.warnings]
    event = view.timeline[-1]
    assert event.type == "clock_resumed" and event.actor.user_id == SUPERVISOR.user_id
    assert (event.data["previous_due_at"], event.data["due_at"]) == (
        clock.due_at.isoformat(), resumed.due_at.isoformat())
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.status, row.paused_at, row.pause_reason, row.due_at, row.next_warning_at) == (
        "running", None, None, resumed.due_at, resumed.warnings[0].at)

    # 20 days of budget were left: both warnings come, the breach only at the moved due time
    await driver.advance(resumed.due_at - ended.ended_at - MINUTE)
    view = await driver.view(handle)
    assert view.stage == "mediation"
    assert alarms(view, clock.clock_id) == [("clock_warning", 0.5), ("clock_warning", 0.8)]
    warned = [e.at for e in view.timeline if e.type == "clock_warning"]
    assert all(w.at <= at < w.at + MINUTE for w, at in zip(resumed.warnings, warned, strict=True))
    await driver.advance(2 * MINUTE)
    view = await driver.view(handle)
    assert view.stage == "escalated"
    breach = next(e for e in view.timeline if e.type == "clock_breached")
    assert resumed.due_at <= breach.at < resumed.due_at + MINUTE
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.status, row.breached, row.due_at, row.paused_at) == ("met", True, resumed.due_at, None)
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def test_supervisor_extends_a_deadline_and_the_breach_waits_for_the_new_one(driver: CaseDriver) -> None:
    handle, view, clock = await in_mediation(driver)
    case_id, med = view.case_id, view.mediator.id
    await driver.advance(timedelta(days=5))
    command = {"type": "extend_clock", "clock_id": clock.clock_id,
               "by": {"amount": 10, "unit": "calendar_days"}, "reason": "当事人外出务工，节后返乡再调"}

    message = await refused(driver, handle, mediator(med), command)
    assert "a mediator cannot extend a deadline" in message
    assert clock_by_id(await driver.view(handle), clock.clock_id).due_at == clock.due_at

    view = await driver.act(handle, SUPERVISOR, command)
    extended = clock_by_id(view, clock.clock_id)
    extension = extended.extensions[-1]
    assert extended.due_at == clock.due_at + timedelta(days=10)
    assert (extension.approved_by, extension.previous_due_at, extension.new_due_at) == (
        SUPERVISOR.user_id, clock.due_at, extended.due_at)
    # unfired warnings are re-placed over the longer budget: fraction f moves f x 10 days later
    assert [w.at - c.at for w, c in zip(extended.warnings, clock.warnings, strict=True)] == [
        timedelta(days=5), timedelta(days=8)]
    assert view.timeline[-1].type == "clock_extended"
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.due_at, row.next_warning_at, row.status) == (extended.due_at, extended.warnings[0].at, "running")

    await driver.advance(timedelta(days=26))  # day 31: past the original due time
    view = await driver.view(handle)
    assert view.stage == "mediation" and not view.breached
    assert alarms(view, clock.clock_id) == [("clock_warning", 0.5)]
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.breached, row.warnings_fired, row.next_warning_at) == (False, 1, extended.warnings[1].at)

    await driver.advance(extended.due_at - (extension.at + timedelta(days=26)) - MINUTE)
    view = await driver.view(handle)
    assert view.stage == "mediation"
    assert alarms(view, clock.clock_id) == [("clock_warning", 0.5), ("clock_warning", 0.8)]
    await driver.advance(2 * MINUTE)
    view = await driver.view(handle)
    assert view.stage == "escalated"
    breach = next(e for e in view.timeline if e.type == "clock_breached")
    assert extended.due_at <= breach.at < extended.due_at + MINUTE
    assert breach.data["due_at"] == extended.due_at.isoformat()
    row = clock_row(driver, case_id, clock.clock_id)
    assert (row.breached, row.breached_at, row.due_at) == (True, breach.at, extended.due_at)
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def test_mediation_extends_once_with_both_parties_consent(driver: CaseDriver) -> None:
    handle, view, clock = await in_mediation(driver)
    case_id, me = view.case_id, mediator(view.mediator.id)
    extend = {"type": "extend_mediation", "both_parties_consent": True, "reason": "双方同意延长调解期限"}
    with pytest.raises(ValidationError):  # consent is part of the command, not an option
        await driver.act(handle, me, {**extend, "both_parties_consent": False})

    view = await driver.act(handle, me, extend)
    extended = clock_by_id(view, clock.clock_id)
    assert view.mediation.extensions == 1
    assert extended.due_at == clock.due_at + timedelta(days=30)  # policy: mediation.extension
    assert [e.type for e in view.timeline[-2:]] == ["mediation_extended", "clock_extended"]
    assert clock_row(driver, case_id, clock.clock_id).due_at == extended.due_at

    message = await refused(driver, handle, SUPERVISOR, extend)
    assert "already extended 1 time(s); the limit is 1" in message
    assert (await driver.view(handle)).timeline == view.timeline

    await driver.advance(timedelta(days=31))  # the month is over, the extension is not
    view = await driver.view(handle)
    assert view.stage == "mediation" and not view.breached
    await driver.advance(timedelta(days=30))
    view = await driver.view(handle)
    assert view.stage == "escalated"
    breach = next(e for e in view.timeline if e.type == "clock_breached")
    assert breach.at >= extended.due_at
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def open_emergency(driver: CaseDriver) -> tuple[WorkflowHandle, str, Clock]:
    handle = await driver.open(urgency="emergency", description="对方扬言要动刀，情况紧急")
    view = await driver.view(handle)
    return handle, view.case_id, clock_named(view, "emergency_response")


async def test_deadlines_fire_on_time_while_the_database_is_down(driver: CaseDriver) -> None:
    """The clock's warnings and its breach all fall inside the outage: each fires at its own time
    (the timers do not wait for the read model), and the read model catches up once it is back."""
    handle, case_id, emergency = await open_emergency(driver)
    await driver.advance(timedelta(minutes=20))
    read_model_down(driver.engine)
    await driver.advance(timedelta(minutes=60))

    view = await driver.view(handle)
    assert view.stage == "escalated" and view.breached
    fired = {(e.type, e.data.get("fraction")): e.at for e in view.timeline if e.data.get("clock_id") == emergency.clock_id
             and e.type in ("clock_warning", "clock_breached")}
    outage_from = emergency.started_at + timedelta(minutes=20)
    on_time = {("clock_warning", w.fraction): w.at for w in emergency.warnings} | {
        ("clock_breached", None): emergency.due_at}
    assert len(on_time) >= 2 and all(due > outage_from for due in on_time.values())
    assert fired.keys() == on_time.keys()
    for alarm, due in on_time.items():
        assert timedelta(0) <= fired[alarm] - due < timedelta(seconds=5), (alarm, fired[alarm], due)
    assert clock_row(driver, case_id, emergency.clock_id).warnings_fired == 0  # nothing projected yet
    assert driver.record(case_id).stage == "triage"

    read_model_back(driver.engine)  # the database is back
    await driver.advance(timedelta(minutes=1))
    row = clock_row(driver, case_id, emergency.clock_id)
    assert (row.breached, row.breached_at) == (True, fired[("clock_breached", None)])
    assert row.warnings_fired == len(emergency.warnings)
    assert driver.record(case_id).stage == "escalated"
    assert driver.event_types(case_id) == [e.type for e in view.timeline]
    kinds = outbox_kinds(driver, case_id)
    assert (kinds["deadline_warning"], kinds["deadline_breached"], kinds["case_escalated"]) == (
        len(emergency.warnings), 1, 1)  # each once: no storm when the backlog is projected
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "警方已处置"})
    assert (await handle.result()).final_outcome is not None
    await driver.save_history(handle, "breach_on_time_during_outage")


async def test_a_read_model_outage_delays_the_breach_projection_but_never_fails_the_case(driver: CaseDriver) -> None:
    handle, case_id, emergency = await open_emergency(driver)
    await driver.advance(timedelta(minutes=50))
    read_model_down(driver.engine)
    # The breach at 60 minutes cannot be projected for 20 minutes: longer than the ~8 minutes that
    # 20 attempts with backoff last, after which a failed activity would fail the workflow itself.
    await driver.advance(timedelta(minutes=30))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    view = await driver.view(handle)
    assert view.stage == "escalated"
    assert clock_row(driver, case_id, emergency.clock_id).breached is False  # not projected yet
    assert driver.record(case_id).stage == "triage"

    read_model_back(driver.engine)  # the database is back
    await driver.advance(timedelta(minutes=1))
    row = clock_row(driver, case_id, emergency.clock_id)
    assert (row.breached, row.status) == (True, "met")
    assert driver.record(case_id).stage == "escalated"
    assert driver.event_types(case_id) == [e.type for e in view.timeline]
    assert outbox_kinds(driver, case_id)["deadline_breached"] == 1
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "警方已处置"})
