"""A case's state as its workflow holds it, and what it shows to people and to the read model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from disputeflow.domain.process.command import Actor
from disputeflow.domain.clocks import Clock
from disputeflow.domain.eligibility import EligibilityResult
from disputeflow.domain.enums import PHASE_OF_STAGE, FinalOutcome, Phase, Role, SessionOutcome, Stage
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CasePolicy, Target


class CaseEvent(BaseModel):
    """One entry of the case's timeline: who did what, when, and where the case stood after it."""

    seq: int
    type: str
    at: datetime
    actor: Actor | None = None  # None: the system (a timer, an automatic rule)
    stage: Stage
    data: dict[str, Any] = Field(default_factory=dict)


class Notification(BaseModel):
    """A message for the outbox, keyed so that it is written once however often it is projected."""

    key: str
    kind: str
    recipient_role: Role
    recipient_id: str | None = None
    event_seq: int
    payload: dict[str, Any] = Field(default_factory=dict)


class Assignee(BaseModel):
    id: str
    name: str
    region_code: str


class MediationSession(BaseModel):
    number: int
    at: datetime
    outcome: SessionOutcome
    notes: str = ""
    mediator_id: str | None = None


class MediationProgress(BaseModel):
    sessions: list[MediationSession] = Field(default_factory=list)
    failed_sessions: int = 0
    extensions: int = 0
    confirmation_applied: bool | None = None


class LegalAidProgress(BaseModel):
    missing_materials: list[str] = Field(default_factory=list)
    assessment: EligibilityResult | None = None
    approved: bool | None = None
    decision_reason: str | None = None
    review_requested: bool = False
    outcome: str | None = None


class Escalation(BaseModel):
    from_stage: Stage
    reason: str
    at: datetime


class CaseTask(BaseModel):
    """Something a person must do next, derived from the stage; projected for inboxes."""

    key: str
    kind: str
    title: str
    assignee_role: Role
    assignee_id: str | None = None
    due_at: datetime | None = None
    created_at: datetime


class ExtensionRequest(BaseModel):
    """An extension someone asked for, awaiting a supervisor's decision (one per clock at a time)."""

    clock_id: str
    by: Target
    reason: str
    requested_by: Actor
    requested_at: datetime


class PersonWanted(BaseModel):
    """A mediator or lawyer the case waits for. An action asks for one; the workflow finds or
    chooses the person as a system step and records the result (`lifecycle.fill`)."""

    kind: Literal["mediator", "lawyer"]
    person_id: str | None = None  # named by whoever acted; None: the least-loaded one
    exclude: list[str] = Field(default_factory=list)  # never these (a reassignment's previous mediator)
    asked_at_seq: int  # the event that asked: tells one request from a later one for the same kind
    asked_by: Actor | None = None


class CaseState(BaseModel):
    case_id: str
    intake: Intake
    policy: CasePolicy
    opened_at: datetime
    stage: Stage = Stage.triage
    stage_entered_at: datetime
    stage_entries: int = 1  # how many stages the case has entered: makes task keys unique
    closed_at: datetime | None = None
    final_outcome: FinalOutcome | None = None
    pending_outcome: FinalOutcome | None = None  # what closure will record, set when follow-up starts
    mediator: Assignee | None = None
    lawyer: Assignee | None = None
    mediation: MediationProgress = Field(default_factory=MediationProgress)
    legal_aid: LegalAidProgress = Field(default_factory=LegalAidProgress)
    referral: dict[str, Any] | None = None
    escalation: Escalation | None = None
    satisfaction: int | None = None
    clocks: list[Clock] = Field(default_factory=list)
    clocks_started: int = 0
    extension_requests: list[ExtensionRequest] = Field(default_factory=list)  # pending only
    wanted: PersonWanted | None = None  # a person the case waits for the workflow to find
    read_model_refused: str | None = None  # why the read model refuses this case's snapshots, once reported
    timeline: list[CaseEvent] = Field(default_factory=list)
    outbox: list[Notification] = Field(default_factory=list)  # not yet projected
    projected_seq: int = 0  # the last event the read model has
    applied_requests: dict[str, int] = Field(default_factory=dict)  # request id -> seq after it
    runs: int = 1  # workflow runs so far (continue-as-new)

    @property
    def phase(self) -> Phase:
        return PHASE_OF_STAGE[self.stage]

    @property
    def closed(self) -> bool:
        return self.stage is Stage.closed

    @property
    def open_clocks(self) -> list[Clock]:
        return [c for c in self.clocks if c.open]

    @property
    def breached(self) -> bool:
        return any(c.breached for c in self.clocks)

    def clock(self, clock_id: str) -> Clock | None:
        return next((c for c in self.clocks if c.clock_id == clock_id), None)


class CaseView(BaseModel):
    """The whole current state of a case, as the workflow's query returns it."""

    case_id: str
    stage: Stage
    phase: Phase
    opened_at: datetime
    stage_entered_at: datetime
    closed_at: datetime | None
    final_outcome: FinalOutcome | None
    intake: Intake
    policy_version: str
    mediator: Assignee | None
    lawyer: Assignee | None
    mediation: MediationProgress
    legal_aid: LegalAidProgress
    referral: dict[str, Any] | None
    escalation: Escalation | None
    satisfaction: int | None
    breached: bool
    tasks: list[CaseTask]
    clocks: list[Clock]
    timeline: list[CaseEvent]
    extension_requests: list[ExtensionRequest] = Field(default_factory=list)  # awaiting a supervisor
    wanted: PersonWanted | None = None  # a mediator or lawyer being found for the case right now
