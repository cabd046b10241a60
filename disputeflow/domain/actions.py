"""What people do to a case. Each action is one command with its actor and a client-chosen request id."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field

from disputeflow.domain.enums import ExternalForum, PauseReason, ReferralBody, Role, SessionOutcome
from disputeflow.domain.policy import Target
from disputeflow.domain.text import multi_line, single_line

# Free text (see disputeflow.domain.text): NFC, no NUL, control or bidi-override characters; notes
# and reasons may span lines, ids may not.
Note = multi_line(max_length=2000)
Reason = multi_line(min_length=1, max_length=2000)
Ident = single_line(min_length=1, max_length=64)


class Actor(BaseModel):
    """Who acts: taken from the bearer token, never from the request body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Ident
    role: Role
    region_code: str | None = Field(default=None, pattern=r"^\d{2}(\d{2}){0,2}$")
    name: str | None = None


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- Triage --------------------------------------------------------------------------------
class AnswerConsultation(_Command):
    type: Literal["answer_consultation"] = "answer_consultation"
    answer: Reason


class Refer(_Command):
    type: Literal["refer"] = "refer"
    body: ReferralBody
    organisation: Reason = Field(description="The receiving body, e.g. 历下区劳动人事争议仲裁院")
    note: Note = ""


class RecordReferralOutcome(_Command):
    type: Literal["record_referral_outcome"] = "record_referral_outcome"
    accepted: bool
    note: Note = ""


class SendToMediation(_Command):
    type: Literal["send_to_mediation"] = "send_to_mediation"
    note: Note = ""


class OpenLegalAid(_Command):
    type: Literal["open_legal_aid"] = "open_legal_aid"
    note: Note = ""


# -- Mediation -----------------------------------------------------------------------------
class RecordMediationSession(_Command):
    type: Literal["record_mediation_session"] = "record_mediation_session"
    outcome: SessionOutcome
    notes: Note = ""


class ExtendMediation(_Command):
    type: Literal["extend_mediation"] = "extend_mediation"
    both_parties_consent: Literal[True] = Field(description="Mediation is extended only if both parties agree")
    reason: Reason


class RecordJudicialConfirmation(_Command):
    type: Literal["record_judicial_confirmation"] = "record_judicial_confirmation"
    applied: bool
    court: Note = ""


class RecordPerformance(_Command):
    type: Literal["record_performance"] = "record_performance"
    performed: bool
    note: Note = ""


# -- Escalation ----------------------------------------------------------------------------
class Escalate(_Command):
    type: Literal["escalate"] = "escalate"
    reason: Reason


class ReassignMediator(_Command):
    type: Literal["reassign_mediator"] = "reassign_mediator"
    mediator_id: Ident | None = Field(default=None, description="Omit to pick the least-loaded other mediator")
    reason: Reason


class SendToLegalAid(_Command):
    type: Literal["send_to_legal_aid"] = "send_to_legal_aid"
    reason: Reason


class ReferOut(_Command):
    type: Literal["refer_out"] = "refer_out"
    forum: ExternalForum
    legal_aid_offered: bool
    note: Note = ""


# -- Legal aid -----------------------------------------------------------------------------
class RequestMaterials(_Command):
    type: Literal["request_materials"] = "request_materials"
    missing: list[Reason] = Field(min_length=1, max_length=20)


class MaterialsSupplied(_Command):
    type: Literal["materials_supplied"] = "materials_supplied"
    note: Note = ""


class AssessEligibility(_Command):
    type: Literal["assess_eligibility"] = "assess_eligibility"
    monthly_income_per_capita: float = Field(ge=0, le=10_000_000)
    limitation_deadline: date | None = Field(
        default=None, description="When a limitation period or procedural deadline runs out, if any"
    )


class DecideLegalAid(_Command):
    type: Literal["decide_legal_aid"] = "decide_legal_aid"
    approve: bool
    reason: Reason


class RequestReview(_Command):
    type: Literal["request_review"] = "request_review"
    reason: Reason


class DecideReview(_Command):
    type: Literal["decide_review"] = "decide_review"
    overturn: bool = Field(description="True grants legal aid after all")
    reason: Reason


class AssignLawyer(_Command):
    type: Literal["assign_lawyer"] = "assign_lawyer"
    lawyer_id: Ident


class RecordLegalAidOutcome(_Command):
    type: Literal["record_legal_aid_outcome"] = "record_legal_aid_outcome"
    outcome: Reason
    note: Note = ""


# -- Follow-up -----------------------------------------------------------------------------
class RecordReturnVisit(_Command):
    type: Literal["record_return_visit"] = "record_return_visit"
    satisfaction: int = Field(ge=1, le=5)
    comment: Note = ""


class CompleteReview(_Command):
    type: Literal["complete_review"] = "complete_review"
    resolution: Reason


# -- Any open stage ------------------------------------------------------------------------
class PauseClock(_Command):
    type: Literal["pause_clock"] = "pause_clock"
    clock_id: Ident
    reason: PauseReason
    note: Note = ""


class ResumeClock(_Command):
    type: Literal["resume_clock"] = "resume_clock"
    clock_id: Ident
    note: Note = ""


class ExtendClock(_Command):
    type: Literal["extend_clock"] = "extend_clock"
    clock_id: Ident
    by: Target
    reason: Reason


class RequestExtension(_Command):
    """Ask a supervisor to extend a deadline; the clock runs on until they decide."""

    type: Literal["request_extension"] = "request_extension"
    clock_id: Ident
    by: Target
    reason: Reason


class DecideExtension(_Command):
    """Approve (the clock is extended as asked) or refuse the extension requested for a clock."""

    type: Literal["decide_extension"] = "decide_extension"
    clock_id: Ident
    approve: bool
    reason: Reason


class Withdraw(_Command):
    type: Literal["withdraw"] = "withdraw"
    reason: Reason


Command = Annotated[
    Union[
        AnswerConsultation,
        Refer,
        RecordReferralOutcome,
        SendToMediation,
        OpenLegalAid,
        RecordMediationSession,
        ExtendMediation,
        RecordJudicialConfirmation,
        RecordPerformance,
        Escalate,
        ReassignMediator,
        SendToLegalAid,
        ReferOut,
        RequestMaterials,
        MaterialsSupplied,
        AssessEligibility,
        DecideLegalAid,
        RequestReview,
        DecideReview,
        AssignLawyer,
        RecordLegalAidOutcome,
        RecordReturnVisit,
        CompleteReview,
        PauseClock,
        ResumeClock,
        ExtendClock,
        RequestExtension,
        DecideExtension,
        Withdraw,
    ],
    Field(discriminator="type"),
]

COMMAND_TYPES: dict[str, type[_Command]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Command)[0])
}


class ActionRequest(BaseModel):
    """One action on one case. The same request_id applied twice changes the case once."""

    model_config = ConfigDict(extra="forbid")

    request_id: Ident
    actor: Actor
    command: Command
