"""The steps every part of the process is made of: record an event, notify someone, enter a stage
(its clocks start, the old stage's end), pause, resume or extend a clock, escalate, move to
follow-up, close, ask for a person. Each changes the `CaseState` it is given; none does I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import CaseEvent, CaseState, Escalation, ExtensionRequest, Notification, PersonWanted
from disputeflow.domain.clocks import Clock, ClockStatus, extend_clock, pause_clock, resume_clock, start_clock, stop_clock
from disputeflow.domain.enums import FinalOutcome, Role, Stage
from disputeflow.domain.process.command import Actor, Refused

LEGAL_AID_STAGES = frozenset(s for s in Stage if s.value.startswith("legal_aid"))


def emit(state: CaseState, type_: str, now: datetime, actor: Actor | None, **data: Any) -> CaseEvent:
    clean = {k: (v.isoformat() if isinstance(v, datetime) else v.value if hasattr(v, "value") else v)
             for k, v in data.items()}
    event = CaseEvent(seq=len(state.timeline) + 1, type=type_, at=now, actor=actor, stage=state.stage, data=clean)
    state.timeline.append(event)
    return event


def notify(state: CaseState, event: CaseEvent, kind: str, role: Role, recipient: str | None, **payload: Any) -> None:
    state.outbox.append(Notification(
        key=f"{state.case_id}:{event.seq}:{kind}", kind=kind, recipient_role=role, recipient_id=recipient,
        event_seq=event.seq, payload=payload,
    ))


def want(state: CaseState, kind: str, actor: Actor | None, *, person_id: str | None = None,
         exclude: list[str] | None = None) -> None:
    """The case now waits for a mediator or lawyer, found by the workflow (`lifecycle.fill`)."""
    state.wanted = PersonWanted(kind=kind, person_id=person_id, exclude=exclude or [],
                                asked_at_seq=state.timeline[-1].seq, asked_by=actor)


# -- Clocks --------------------------------------------------------------------------------------


def stage_clocks(state: CaseState) -> list[Clock]:
    return [c for c in state.open_clocks if c.stage is state.stage]


def stage_clock(state: CaseState, name: str) -> Clock | None:
    return next((c for c in stage_clocks(state) if c.name == name), None)


def require_clock(state: CaseState, clock_id: str) -> Clock:
    clock = state.clock(clock_id)
    assert clock is not None  # guarded
    return clock


def open_clock_or_refuse(state: CaseState, clock_id: str) -> Clock:
    clock = state.clock(clock_id)
    if clock is None:
        known = ", ".join(c.clock_id for c in state.open_clocks) or "none"
        raise Refused(f"case {state.case_id} has no clock '{clock_id}' (open clocks: {known})", code="unknown_clock",
                      clock_id=clock_id, known=[c.clock_id for c in state.open_clocks])
    if not clock.open:
        raise Refused(f"clock '{clock_id}' has already ended ({clock.status.value})", code="clock_ended",
                      clock_id=clock_id, clock=clock.name, status=clock.status)
    return clock


def replace_clock(state: CaseState, clock: Clock) -> None:
    state.clocks = [clock if c.clock_id == clock.clock_id else c for c in state.clocks]


def start_stage_clocks(state: CaseState, now: datetime, cal: BusinessCalendar) -> None:
    for spec in state.policy.clocks_for(state.stage):
        state.clocks_started += 1
        clock = start_clock(spec, clock_id=f"{spec.clock}-{state.clocks_started}", now=now, calendar=cal)
        state.clocks.append(clock)
        emit(state, "clock_started", now, None, clock_id=clock.clock_id, clock=clock.name, title=clock.title,
             target=str(clock.target), due_at=clock.due_at, source=clock.source)


def stop(state: CaseState, clock: Clock, now: datetime, status: ClockStatus) -> None:
    stopped = stop_clock(clock, now=now, status=status)
    replace_clock(state, stopped)
    kind = "clock_met" if status is ClockStatus.met else "clock_cancelled"
    emit(state, kind, now, None, clock_id=clock.clock_id, clock=clock.name, due_at=stopped.due_at, late=stopped.breached)
    if (asked := extension_request(state, clock.clock_id)) is not None:  # nothing left to extend
        state.extension_requests.remove(asked)
        emit(state, "extension_request_lapsed", now, None, clock_id=clock.clock_id, clock=clock.name,
             requested_by=asked.requested_by.user_id)


def stop_named(state: CaseState, name: str, now: datetime, status: ClockStatus) -> None:
    clock = stage_clock(state, name)
    if clock is not None:
        stop(state, clock, now, status)


def extension_request(state: CaseState, clock_id: str) -> ExtensionRequest | None:
    return next((r for r in state.extension_requests if r.clock_id == clock_id), None)


def pause(state: CaseState, clock: Clock, now: datetime, actor: Actor | None, reason: str, note: str = "") -> None:
    replace_clock(state, pause_clock(clock, now=now, reason=reason))
    emit(state, "clock_paused", now, actor, clock_id=clock.clock_id, clock=clock.name, reason=reason, note=note)


def resume(state: CaseState, clock: Clock, now: datetime, cal: BusinessCalendar, actor: Actor | None,
           note: str = "") -> None:
    resumed = resume_clock(clock, now=now, calendar=cal)
    replace_clock(state, resumed)
    emit(state, "clock_resumed", now, actor, clock_id=clock.clock_id, clock=clock.name,
         previous_due_at=clock.due_at, due_at=resumed.due_at, note=note)


def extend(state: CaseState, clock: Clock, by: Any, now: datetime, cal: BusinessCalendar, actor: Actor,
           reason: str) -> None:
    extended = extend_clock(clock, by=by, now=now, calendar=cal, reason=reason, approved_by=actor.user_id)
    replace_clock(state, extended)
    emit(state, "clock_extended", now, actor, clock_id=clock.clock_id, clock=clock.name, by=str(by),
         previous_due_at=clock.due_at, due_at=extended.due_at, reason=reason)


# -- Stages --------------------------------------------------------------------------------------


def enter(state: CaseState, stage: Stage, now: datetime, cal: BusinessCalendar, actor: Actor | None,
          event_type: str, *, clock_status: ClockStatus = ClockStatus.met, **data: Any) -> CaseEvent:
    """Move to `stage`: the old stage's clocks end, the new stage's clocks start."""
    previous = state.stage
    state.wanted = None  # whoever was being found was for the stage the case leaves
    for clock in stage_clocks(state):
        stop(state, clock, now, clock_status)
    state.stage, state.stage_entered_at = stage, now
    state.stage_entries += 1
    event = emit(state, event_type, now, actor, from_stage=previous, **data)
    start_stage_clocks(state, now, cal)
    return event


def escalate(state: CaseState, now: datetime, cal: BusinessCalendar, actor: Actor | None, reason: str,
             **data: Any) -> None:
    state.escalation = Escalation(from_stage=state.stage, reason=reason, at=now)
    event = enter(state, Stage.escalated, now, cal, actor, "escalated", reason=reason, **data)
    notify(state, event, "case_escalated", Role.supervisor, None, reason=reason)


def to_follow_up(state: CaseState, now: datetime, cal: BusinessCalendar, actor: Actor | None,
                 final: FinalOutcome, event_type: str, **data: Any) -> None:
    state.pending_outcome = final
    enter(state, Stage.follow_up, now, cal, actor, event_type, pending_outcome=final, **data)


def close(state: CaseState, now: datetime, cal: BusinessCalendar, actor: Actor | None, outcome: FinalOutcome,
          *, clock_status: ClockStatus = ClockStatus.met) -> None:
    state.final_outcome, state.closed_at = outcome, now
    enter(state, Stage.closed, now, cal, actor, "case_closed", clock_status=clock_status, final_outcome=outcome)
