"""Escalation: a case that mediation or a deadline could not settle goes to the supervisor, who
reassigns it, sends it to legal aid, or refers it out to litigation or arbitration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from disputeflow.domain.case import CaseState
from disputeflow.domain.enums import ExternalForum, FinalOutcome, Role, Stage
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import STAFF, Change, Command, Effects, Ident, Note, Reason, note, words
from disputeflow.domain.process.mediation import assign_mediator

SUPERVISOR = frozenset({Role.supervisor})


class Escalate(Command):
    type: Literal["escalate"] = "escalate"
    reason: Reason

    stages = frozenset({Stage.triage, Stage.referred, Stage.mediation, Stage.agreement, Stage.legal_aid_review,
                        Stage.legal_aid_assignment, Stage.legal_aid_representation})
    roles, what = STAFF, "escalate a case"
    example = {"reason": "当事人情绪激动，需主任协调"}

    def apply(self, state: CaseState, change: Change) -> None:
        c.escalate(state, change.now, change.cal, change.actor, self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"escalated the case ({f.get('reason')})"


class ReassignMediator(Command):
    type: Literal["reassign_mediator"] = "reassign_mediator"
    mediator_id: Ident | None = Field(default=None, description="Omit to pick the least-loaded other mediator")
    reason: Reason

    stages, roles, what = frozenset({Stage.mediation, Stage.escalated}), SUPERVISOR, "reassign the mediator"
    example = {"mediator_id": "med-370102-02", "reason": "原调解员回避"}

    def apply(self, state: CaseState, change: Change) -> Effects:
        now, cal, actor = change.now, change.cal, change.actor
        previous = state.mediator
        # Not the one being replaced, nor those a reassignment still being carried out set aside.
        pending = state.wanted.exclude if state.wanted and state.wanted.kind == "mediator" else []
        exclude = ([previous.id] if previous else []) + pending
        if state.stage is not Stage.mediation:
            state.mediation.failed_sessions = 0  # a new attempt with a new mediator
            c.enter(state, Stage.mediation, now, cal, actor, "sent_to_mediation", reason=self.reason)
        else:
            c.emit(state, "mediator_released", now, actor, mediator_id=previous.id if previous else None,
                   reason=self.reason)
        state.mediator = None
        if change.chosen is not None:  # looked up before the action (the legacy workflow)
            assign_mediator(state, change.chosen, now, cal)
            return Effects()
        if self.mediator_id is not None:
            c.want(state, "mediator", actor, person_id=self.mediator_id)
            return Effects()
        c.want(state, "mediator", actor, exclude=exclude)
        return Effects(assign_mediator=True, exclude_mediators=exclude)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return (f"reassigned the case to mediator {f['mediator_id']}" if f.get("mediator_id")
                else "asked for another mediator") + note(f.get("reason"))


class SendToLegalAid(Command):
    type: Literal["send_to_legal_aid"] = "send_to_legal_aid"
    reason: Reason

    stages, roles, what = frozenset({Stage.escalated}), SUPERVISOR, "send an escalated case to legal aid"

    def apply(self, state: CaseState, change: Change) -> None:
        c.enter(state, Stage.legal_aid_review, change.now, change.cal, change.actor, "legal_aid_opened",
                reason=self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"sent the escalated case to legal aid ({f.get('reason')})"


class ReferOut(Command):
    type: Literal["refer_out"] = "refer_out"
    forum: ExternalForum
    legal_aid_offered: bool
    note: Note = ""

    stages, roles, what = frozenset({Stage.escalated}), SUPERVISOR, "refer a case to litigation or arbitration"

    def apply(self, state: CaseState, change: Change) -> None:
        outcome = (FinalOutcome.referred_to_litigation if self.forum is ExternalForum.litigation
                   else FinalOutcome.referred_to_arbitration)
        c.to_follow_up(state, change.now, change.cal, change.actor, outcome, "referred_out", forum=self.forum,
                       legal_aid_offered=self.legal_aid_offered, note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return (f"referred the case out to {words(f.get('forum'))}"
                + (", offering legal aid" if f.get("legal_aid_offered") else "") + note(f.get("note")))
