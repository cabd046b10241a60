"""Deadlines at any open stage: pausing, resuming and extending a clock (or asking a supervisor to),
and the warnings and breaches the workflow's timers fire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ValidationInfo

from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import CaseState, ExtensionRequest
from disputeflow.domain.clocks import Clock, ClockStatus, due_alarms, mark_fired
from disputeflow.domain.clocks import next_alarm_at as clock_next_alarm_at
from disputeflow.domain.enums import PauseReason, Role
from disputeflow.domain.policy import REQUEST_LIMITS, BreachAction, Target


def _within_a_year(target: Target, info: ValidationInfo) -> Target:
    """A person asks for at most a year (`REQUEST_LIMITS`); a recorded command (JSON) is taken as it
    was accepted then."""
    if info.mode != "json" and target.amount > REQUEST_LIMITS[target.unit.value]:
        raise ValueError(f"at most {REQUEST_LIMITS[target.unit.value]} {target.unit.value.replace('_', ' ')} "
                         "may be asked for at once")
    return target


RequestedTarget = Annotated[Target, AfterValidator(_within_a_year)]
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import OPEN_STAGES, STAFF, Actor, Change, Command, Ident, Note, Reason, Refused
from disputeflow.domain.process.command import note, span, words
from disputeflow.domain.process.escalation import Escalate
from disputeflow.domain.process.legal_aid import lapse
from disputeflow.domain.process.tasks import current_assignee

# A pause moves a deadline, so it is a supervisor's call (a legal-aid officer's for legal-aid
# clocks); materials requests pause and resume the decision clock by themselves.
PAUSERS = frozenset({Role.legal_aid_officer, Role.supervisor})
SUPERVISOR = frozenset({Role.supervisor})


def _may_pause(actor: Actor, clock: Clock) -> None:
    if actor.role is Role.legal_aid_officer and clock.stage not in c.LEGAL_AID_STAGES:
        raise Refused(f"a legal-aid officer may pause or resume only legal-aid clocks, not '{clock.name}'",
                      code="clock_not_legal_aid", clock=clock.name)


class PauseClock(Command):
    type: Literal["pause_clock"] = "pause_clock"
    clock_id: Ident
    reason: PauseReason
    note: Note = ""

    stages, roles, what = OPEN_STAGES, PAUSERS, "pause a clock"
    example = {"clock_id": "legal_aid_decision-3", "reason": "awaiting_materials", "note": "补充收入证明"}

    def guard(self, state: CaseState, actor: Actor) -> None:
        clock = c.open_clock_or_refuse(state, self.clock_id)
        _may_pause(actor, clock)
        if clock.paused:
            raise Refused(f"clock '{self.clock_id}' is already paused", code="clock_already_paused",
                          clock_id=self.clock_id, clock=clock.name)

    def apply(self, state: CaseState, change: Change) -> None:
        c.pause(state, c.require_clock(state, self.clock_id), change.now, change.actor, self.reason.value, note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"paused clock {f.get('clock_id')} ({words(f.get('reason'))})"


class ResumeClock(Command):
    type: Literal["resume_clock"] = "resume_clock"
    clock_id: Ident
    note: Note = ""

    stages, roles, what = OPEN_STAGES, PAUSERS, "resume a clock"

    def guard(self, state: CaseState, actor: Actor) -> None:
        clock = c.open_clock_or_refuse(state, self.clock_id)
        _may_pause(actor, clock)
        if not clock.paused:
            raise Refused(f"clock '{self.clock_id}' is not paused", code="clock_not_paused", clock_id=self.clock_id,
                          clock=clock.name)

    def apply(self, state: CaseState, change: Change) -> None:
        c.resume(state, c.require_clock(state, self.clock_id), change.now, change.cal, change.actor, note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"resumed clock {f.get('clock_id')}" + note(f.get("note"))


class ExtendClock(Command):
    type: Literal["extend_clock"] = "extend_clock"
    clock_id: Ident
    by: RequestedTarget
    reason: Reason

    stages, roles, what = OPEN_STAGES, SUPERVISOR, "extend a deadline"
    example = {"clock_id": "mediation_conclusion-2", "by": {"amount": 15, "unit": "calendar_days"},
               "reason": "案情复杂，经批准延长"}

    def guard(self, state: CaseState, actor: Actor) -> None:
        c.open_clock_or_refuse(state, self.clock_id)

    def apply(self, state: CaseState, change: Change) -> None:
        c.extend(state, c.require_clock(state, self.clock_id), self.by, change.now, change.cal, change.actor, self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"extended clock {f.get('clock_id')} by {span(f.get('by'))} ({f.get('reason')})"


class RequestExtension(Command):
    """Ask a supervisor to extend a deadline; the clock runs on until they decide."""

    type: Literal["request_extension"] = "request_extension"
    clock_id: Ident
    by: RequestedTarget
    reason: Reason

    # Whoever works a case may ask for more time; the supervisor's decision is the approval.
    stages, roles, what = OPEN_STAGES, STAFF - SUPERVISOR, "request an extension of a deadline"
    example = {"clock_id": "mediation_conclusion-2", "by": {"amount": 5, "unit": "working_days"},
               "reason": "当事人需补充工资条证据"}

    def guard(self, state: CaseState, actor: Actor) -> None:
        clock = c.open_clock_or_refuse(state, self.clock_id)
        if (pending := c.extension_request(state, self.clock_id)) is not None:
            raise Refused(f"an extension of clock '{self.clock_id}' requested by {pending.requested_by.user_id} "
                          "already awaits a supervisor's decision", code="extension_already_requested",
                          clock_id=self.clock_id, clock=clock.name, user=pending.requested_by.user_id)

    def apply(self, state: CaseState, change: Change) -> None:
        clock = c.require_clock(state, self.clock_id)
        state.extension_requests.append(ExtensionRequest(clock_id=clock.clock_id, by=self.by, reason=self.reason,
                                                         requested_by=change.actor, requested_at=change.now))
        event = c.emit(state, "extension_requested", change.now, change.actor, clock_id=clock.clock_id,
                       clock=clock.name, by=str(self.by), due_at=clock.due_at, reason=self.reason)
        c.notify(state, event, "extension_requested", Role.supervisor, None, clock=clock.title, by=str(self.by),
                 due_at=clock.due_at.isoformat(), reason=self.reason, requested_by=change.actor.user_id)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"asked to extend clock {f.get('clock_id')} by {span(f.get('by'))} ({f.get('reason')})"


class DecideExtension(Command):
    """Approve (the clock is extended as asked) or refuse the extension requested for a clock."""

    type: Literal["decide_extension"] = "decide_extension"
    clock_id: Ident
    approve: bool
    reason: Reason

    stages, roles, what = OPEN_STAGES, SUPERVISOR, "decide a requested extension"
    example = {"clock_id": "mediation_conclusion-2", "approve": True, "reason": "同意，请按期结案"}

    def guard(self, state: CaseState, actor: Actor) -> None:
        clock = c.open_clock_or_refuse(state, self.clock_id)
        if c.extension_request(state, self.clock_id) is None:
            waiting = ", ".join(r.clock_id for r in state.extension_requests) or "none"
            raise Refused(f"no extension of clock '{self.clock_id}' awaits a decision (awaiting: {waiting})",
                          code="no_extension_requested", clock_id=self.clock_id, clock=clock.name,
                          waiting=[r.clock_id for r in state.extension_requests])

    def apply(self, state: CaseState, change: Change) -> None:
        asked = c.extension_request(state, self.clock_id)
        assert asked is not None  # guarded
        state.extension_requests.remove(asked)
        clock = c.require_clock(state, self.clock_id)
        if self.approve:
            c.extend(state, clock, asked.by, change.now, change.cal, change.actor, asked.reason)
        verdict = "extension_approved" if self.approve else "extension_refused"
        event = c.emit(state, verdict, change.now, change.actor, clock_id=clock.clock_id, clock=clock.name,
                       by=str(asked.by), requested_by=asked.requested_by.user_id, reason=self.reason)
        c.notify(state, event, verdict, asked.requested_by.role, asked.requested_by.user_id, clock=clock.title,
                 by=str(asked.by), due_at=state.clock(clock.clock_id).due_at.isoformat(), reason=self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return (f"{'approved' if f.get('approve') else 'refused'} the extension asked for clock {f.get('clock_id')} "
                f"({f.get('reason')})")


# -- Timers --------------------------------------------------------------------------------------


def next_alarm_at(state: CaseState) -> datetime | None:
    times = [t for t in (clock_next_alarm_at(clock) for clock in state.open_clocks) if t is not None]
    return min(times) if times else None


def fire_alarms(state: CaseState, now: datetime, cal: BusinessCalendar) -> bool:
    """Fire every warning and breach that is due, each exactly once. True if anything fired."""
    alarms = sorted((al for clock in state.open_clocks for al in due_alarms(clock, now)), key=lambda al: al.at)
    fired = False
    for alarm in alarms:
        clock = state.clock(alarm.clock_id)
        if clock is None or clock.status is not ClockStatus.running:
            continue  # an earlier breach in this batch moved the case on
        c.replace_clock(state, mark_fired(clock, alarm, now))
        fired = True
        if alarm.kind == "warning":
            event = c.emit(state, "clock_warning", now, None, clock_id=clock.clock_id, clock=clock.name,
                           fraction=alarm.fraction, due_at=clock.due_at)
            role, who = current_assignee(state)
            c.notify(state, event, "deadline_warning", role, who, clock=clock.title, due_at=clock.due_at.isoformat())
            continue
        event = c.emit(state, "clock_breached", now, None, clock_id=clock.clock_id, clock=clock.name,
                       due_at=clock.due_at, lateness_seconds=(now - clock.due_at).total_seconds(),
                       actions=[x.value for x in clock.on_breach])
        if BreachAction.notify_supervisor in clock.on_breach:
            c.notify(state, event, "deadline_breached", Role.supervisor, None, clock=clock.title,
                     due_at=clock.due_at.isoformat())
        if BreachAction.escalate in clock.on_breach and state.stage in Escalate.stages:
            c.escalate(state, now, cal, None, f"deadline missed: {clock.title}")
        elif BreachAction.lapse in clock.on_breach:
            lapse(state, now, cal, clock)
    return fired
