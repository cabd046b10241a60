"""What people do to a case. Each action is one command with its actor and a client-chosen request id.

The commands themselves, with their rules, live with their part of the process in
`disputeflow.domain.process`; this module gathers them into the one `Command` type the workflow's
`act` update and the API take.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field

from disputeflow.domain.process import deadlines, escalation, follow_up, legal_aid, mediation, triage
from disputeflow.domain.process.command import Actor, Command as CommandBase, Ident, Note, Reason
from disputeflow.domain.process.deadlines import DecideExtension, ExtendClock, PauseClock, RequestExtension, ResumeClock
from disputeflow.domain.process.escalation import Escalate, ReassignMediator, ReferOut, SendToLegalAid
from disputeflow.domain.process.follow_up import CompleteReview, RecordReturnVisit, Withdraw
from disputeflow.domain.process.legal_aid import (
    AssessEligibility,
    AssignLawyer,
    DecideLegalAid,
    DecideReview,
    MaterialsSupplied,
    RecordLegalAidOutcome,
    RequestMaterials,
    RequestReview,
)
from disputeflow.domain.process.mediation import (
    ExtendMediation,
    RecordJudicialConfirmation,
    RecordMediationSession,
    RecordPerformance,
)
from disputeflow.domain.process.triage import AnswerConsultation, OpenLegalAid, Refer, RecordReferralOutcome, SendToMediation

# Every command class each part of the process defines, in the order of the process.
COMMANDS: tuple[type[CommandBase], ...] = tuple(
    value for module in (triage, mediation, escalation, legal_aid, deadlines, follow_up)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, CommandBase) and value.__module__ == module.__name__
)

Command = Annotated[Union[COMMANDS], Field(discriminator="type")]  # noqa: UP007 - a tuple of classes

COMMAND_TYPES = {command.model_fields["type"].default: command for command in COMMANDS}


class ActionRequest(BaseModel):
    """One action on one case. The same request_id applied twice changes the case once."""

    model_config = ConfigDict(extra="forbid")

    request_id: Ident
    actor: Actor
    command: Command


__all__ = [
    "COMMAND_TYPES", "ActionRequest", "Actor", "AnswerConsultation", "AssessEligibility", "AssignLawyer", "Command",
    "CompleteReview", "DecideExtension", "DecideLegalAid", "DecideReview", "Escalate", "ExtendClock",
    "ExtendMediation", "Ident", "MaterialsSupplied", "Note", "OpenLegalAid", "PauseClock", "Reason",
    "ReassignMediator", "RecordJudicialConfirmation", "RecordLegalAidOutcome", "RecordMediationSession",
    "RecordPerformance", "RecordReferralOutcome", "RecordReturnVisit", "Refer", "ReferOut", "RequestExtension",
    "RequestMaterials", "RequestReview", "ResumeClock", "SendToLegalAid", "SendToMediation", "Withdraw",
]
