"""Triage: the call is answered on the spot, referred to the body that handles it, sent to
mediation, or opened as a legal-aid application."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from disputeflow.domain.case import CaseState
from disputeflow.domain.intake import IdNumber
from disputeflow.domain.enums import FinalOutcome, ReferralBody, Role, Stage
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import Change, Command, Effects, Note, Reason, note, words
from disputeflow.domain.text import single_line

OPERATORS = frozenset({Role.operator, Role.supervisor})


class AnswerConsultation(Command):
    type: Literal["answer_consultation"] = "answer_consultation"
    answer: Reason

    stages, roles, what = frozenset({Stage.triage}), OPERATORS, "answer a consultation"
    example = {"answer": "可向劳动人事争议仲裁委员会申请仲裁，仲裁时效为一年。"}

    def apply(self, state: CaseState, change: Change) -> None:
        c.to_follow_up(state, change.now, change.cal, change.actor, FinalOutcome.consultation_answered,
                       "consultation_answered", answer=self.answer)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "answered the consultation"


class Refer(Command):
    type: Literal["refer"] = "refer"
    body: ReferralBody
    organisation: single_line(min_length=1, max_length=200) = Field(description="The receiving body, e.g. 历下区劳动人事争议仲裁院")
    note: Note = ""

    stages, roles, what = frozenset({Stage.triage}), OPERATORS, "refer a case to another body"
    example = {"body": "labour_arbitration", "organisation": "历下区劳动人事争议仲裁院", "note": "已电话告知来电人"}

    def apply(self, state: CaseState, change: Change) -> None:
        state.referral = {"body": self.body.value, "organisation": self.organisation, "note": self.note}
        c.enter(state, Stage.referred, change.now, change.cal, change.actor, "referred", body=self.body,
                organisation=self.organisation, note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"referred the case to {f.get('organisation')} ({words(f.get('body'))})"


class RecordReferralOutcome(Command):
    type: Literal["record_referral_outcome"] = "record_referral_outcome"
    accepted: bool
    note: Note = ""

    stages, roles, what = frozenset({Stage.referred}), OPERATORS, "record whether a referral was accepted"

    def apply(self, state: CaseState, change: Change) -> None:
        if self.accepted:
            c.to_follow_up(state, change.now, change.cal, change.actor, FinalOutcome.referred_accepted,
                           "referral_accepted", note=self.note)
        else:
            c.enter(state, Stage.triage, change.now, change.cal, change.actor, "referral_bounced", note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "recorded that the referral was " + ("accepted" if f.get("accepted") else "not accepted") + note(f.get("note"))


class SendToMediation(Command):
    """The least-loaded mediator of the region with the dispute type's expertise is found for the case."""

    type: Literal["send_to_mediation"] = "send_to_mediation"
    note: Note = ""

    stages, roles, what = frozenset({Stage.triage}), OPERATORS, "send a case to mediation"

    def apply(self, state: CaseState, change: Change) -> Effects:
        c.enter(state, Stage.mediation, change.now, change.cal, change.actor, "sent_to_mediation", note=self.note)
        c.want(state, "mediator", change.actor)
        return Effects(assign_mediator=True)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "sent the case to mediation" + note(f.get("note"))


class OpenLegalAid(Command):
    type: Literal["open_legal_aid"] = "open_legal_aid"
    note: Note = ""
    id_number: IdNumber | None = Field(
        default=None, description="The applicant's resident identity card number, which a legal-aid application "
                                  "needs; shown to the region's legal-aid officers only")

    stages = frozenset({Stage.triage})
    roles = frozenset({Role.operator, Role.legal_aid_officer, Role.supervisor})
    what = "open a legal-aid application"

    def apply(self, state: CaseState, change: Change) -> None:
        if self.id_number is not None:  # kept in the state only, never in event data
            state.intake.caller.id_number = self.id_number
        c.enter(state, Stage.legal_aid_review, change.now, change.cal, change.actor, "legal_aid_opened", note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "opened a legal-aid application" + note(f.get("note"))
