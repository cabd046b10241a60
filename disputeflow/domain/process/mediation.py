"""Mediation: sessions with a mediator until the parties agree or it fails; an agreement's judicial
confirmation window and its performance."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState, MediationSession
from disputeflow.domain.clocks import ClockStatus
from disputeflow.domain.enums import FinalOutcome, Role, SessionOutcome, Stage
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import Change, Command, Note, Reason, Refused, note, words

MEDIATORS = frozenset({Role.mediator, Role.supervisor})


class RecordMediationSession(Command):
    type: Literal["record_mediation_session"] = "record_mediation_session"
    outcome: SessionOutcome
    notes: Note = ""

    stages, roles, what = frozenset({Stage.mediation}), MEDIATORS, "record a mediation session"
    example = {"outcome": "agreement", "notes": "双方同意分两期支付拖欠工资"}

    def guard(self, state: CaseState, actor: Any) -> None:
        if state.mediator is None:
            raise Refused("no mediator is assigned yet; assign one before recording a session", code="no_mediator_yet")

    def apply(self, state: CaseState, change: Change) -> None:
        now, cal, actor = change.now, change.cal, change.actor
        progress = state.mediation
        number = len(progress.sessions) + 1
        progress.sessions.append(MediationSession(number=number, at=now, outcome=self.outcome, notes=self.notes,
                                                  mediator_id=state.mediator.id if state.mediator else None))
        if self.outcome is SessionOutcome.agreement:
            c.enter(state, Stage.agreement, now, cal, actor, "agreement_reached", session=number, notes=self.notes)
            return
        c.emit(state, "mediation_session_recorded", now, actor, session=number, outcome=self.outcome, notes=self.notes)
        if self.outcome in (SessionOutcome.no_agreement, SessionOutcome.party_absent):
            progress.failed_sessions += 1
            limit = state.policy.mediation.max_sessions
            if progress.failed_sessions >= limit:
                c.escalate(state, now, cal, None, f"{progress.failed_sessions} mediation sessions without agreement (limit {limit})")

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"recorded a mediation session: {words(f.get('outcome'))}" + note(f.get("notes"))


class ExtendMediation(Command):
    type: Literal["extend_mediation"] = "extend_mediation"
    both_parties_consent: Literal[True] = Field(description="Mediation is extended only if both parties agree")
    reason: Reason

    stages, roles, what = frozenset({Stage.mediation}), MEDIATORS, "extend mediation"
    example = {"both_parties_consent": True, "reason": "双方同意再协商两周"}

    def guard(self, state: CaseState, actor: Any) -> None:
        rules = state.policy.mediation
        if state.mediation.extensions >= rules.max_extensions:
            raise Refused(f"mediation was already extended {state.mediation.extensions} time(s); "
                          f"the limit is {rules.max_extensions}", code="mediation_extension_limit",
                          times=state.mediation.extensions, limit=rules.max_extensions)
        if c.stage_clock(state, "mediation_conclusion") is None:
            raise Refused("this case has no running mediation deadline to extend", code="no_mediation_deadline")

    def apply(self, state: CaseState, change: Change) -> None:
        clock = c.stage_clock(state, "mediation_conclusion")
        assert clock is not None  # guarded
        state.mediation.extensions += 1
        c.emit(state, "mediation_extended", change.now, change.actor, reason=self.reason, both_parties_consent=True)
        c.extend(state, clock, state.policy.mediation.extension, change.now, change.cal, change.actor, self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"extended mediation with both parties' consent ({f.get('reason')})"


class RecordJudicialConfirmation(Command):
    type: Literal["record_judicial_confirmation"] = "record_judicial_confirmation"
    applied: bool
    court: Note = ""

    stages, roles, what = frozenset({Stage.agreement}), MEDIATORS, "record an application for judicial confirmation"

    def guard(self, state: CaseState, actor: Any) -> None:
        if state.mediation.confirmation_applied is not None:
            raise Refused("the judicial confirmation was already recorded for this agreement",
                          code="confirmation_already_recorded")

    def apply(self, state: CaseState, change: Change) -> None:
        state.mediation.confirmation_applied = self.applied
        c.emit(state, "judicial_confirmation_recorded", change.now, change.actor, applied=self.applied, court=self.court)
        c.stop_named(state, "judicial_confirmation_window", change.now, ClockStatus.met)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        if not f.get("applied"):
            return "recorded that the parties did not apply for judicial confirmation"
        return f"recorded that the parties applied for judicial confirmation{' at ' + f['court'] if f.get('court') else ''}"


class RecordPerformance(Command):
    type: Literal["record_performance"] = "record_performance"
    performed: bool
    note: Note = ""

    stages, roles, what = frozenset({Stage.agreement}), MEDIATORS, "record whether an agreement was performed"

    def apply(self, state: CaseState, change: Change) -> None:
        if self.performed:
            c.to_follow_up(state, change.now, change.cal, change.actor, FinalOutcome.mediated_agreement_performed,
                           "agreement_performed", note=self.note)
        else:
            c.escalate(state, change.now, change.cal, change.actor, "the mediated agreement was not performed",
                       note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "recorded that the agreement was " + ("performed" if f.get("performed") else "not performed") + note(f.get("note"))


def assign_mediator(state: CaseState, chosen: Assignee | None, now: datetime, cal: BusinessCalendar) -> None:
    """Record the mediator the workflow found; none available escalates to the supervisor."""
    state.wanted = None
    if chosen is None:
        c.escalate(state, now, cal, None,
                   f"no active mediator in region {state.intake.region_code} for {state.intake.dispute_type.value} disputes")
        return
    state.mediator = chosen
    event = c.emit(state, "mediator_assigned", now, None, mediator_id=chosen.id, mediator_name=chosen.name)
    c.notify(state, event, "case_assigned", Role.mediator, chosen.id, stage=state.stage)
