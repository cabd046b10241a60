"""What crosses the workflow/activity boundary: plain pydantic models, never table models."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field, model_validator

from disputeflow.domain.actions import Actor
from disputeflow.domain.case import CaseEvent, CaseState, CaseTask, Notification
from disputeflow.domain.clocks import Clock
from disputeflow.domain.enums import DisputeType, FinalOutcome, Stage
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CaseFacts, CasePolicy


class CaseStart(BaseModel):
    """`CaseWorkflowV2`'s one input: a new case as intake registered it, or a long case's state
    carried over when it continues as new."""

    case_id: str
    intake: Intake
    registered_by: Actor | None = None  # the operator who took the call, for the timeline
    registered_at: datetime | None = None  # when the call was registered: every first clock starts then
    policy: CasePolicy | None = None  # pinned by intake
    carried: CaseState | None = None

    @model_validator(mode="after")
    def _opens_or_continues(self) -> CaseStart:
        if self.carried is None and (self.registered_at is None or self.policy is None):
            raise ValueError("a new case needs the instant it was registered and its pinned policy")
        return self


class CaseInput(BaseModel):
    """The legacy `CaseWorkflow`'s input. `carried` is set when a long case continues as new."""

    case_id: str
    intake: Intake
    registered_by: Actor | None = None  # the operator who took the call, for the timeline
    carried: CaseState | None = None


class CaseResult(BaseModel):
    case_id: str
    final_outcome: FinalOutcome | None
    closed_at: datetime | None


class PinPolicyInput(BaseModel):
    facts: CaseFacts
    opened_on: date  # Asia/Shanghai date the case opened: decides which calendar years to pin


class ChoosePersonInput(BaseModel):
    case_id: str
    region_code: str
    dispute_type: DisputeType
    exclude: list[str] = Field(default_factory=list)


class FindPersonInput(BaseModel):
    person_id: str
    region_code: str


class Projection(BaseModel):
    """Everything the read model needs after a change; applying it twice writes nothing twice."""

    case_id: str
    workflow_id: str
    intake: Intake
    stage: Stage
    phase: str
    mediator_id: str | None
    lawyer_id: str | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    final_outcome: FinalOutcome | None
    satisfaction: int | None
    policy_version: str
    breached: bool
    tasks: list[CaseTask]
    clocks: list[Clock]
    events: list[CaseEvent]  # the events the read model does not have yet
    notifications: list[Notification]


def workflow_id_for(case_id: str) -> str:
    return f"case-{case_id}"


class ProjectionRefusal(BaseModel):
    """A case whose snapshots the read model refuses for good: reported to its region's supervisors."""

    case_id: str
    region_code: str
    event_seq: int  # the case's last event when it was refused
    reason: str  # the kind of refusal, never the data
