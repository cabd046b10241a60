"""What the API accepts and returns. Never a table model: these are built from rows and views.

A case's detail has one shape whether it comes from the live workflow (`source: "workflow"`) or
from the read model (`source: "read_model"`: a closed case, or one whose workflow is gone); only
the live source fills `progress`.

The caller's name and phone are masked (`张*`, `138****8000`) for anyone not working the case, and
the identity card number is returned only to the legal-aid officers of the case's region on its
legal-aid stages: `disputeflow.privacy` decides, from the `actor` each builder takes (none: masked).
Each built object remembers which caller fields it disclosed unmasked (`disclosed()`), for the read
log (`disputeflow.db.reads`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, model_serializer

from disputeflow.db.models import (
    AuditEntry,
    CaseEventRecord,
    CaseRecord,
    CaseTaskRecord,
    ClockRecord,
    NotificationAck,
    NotificationParked,
    OutboxMessage,
)
from disputeflow.db.queries import CaseRows
from disputeflow.domain.case import (
    CaseEvent,
    CaseTask,
    CaseView,
    Escalation,
    ExtensionRequest,
    LegalAidProgress,
    MediationProgress,
)
from disputeflow.domain.clocks import Clock
from disputeflow.domain.enums import Category, Channel, DisputeType, FinalOutcome, Phase, Role, Stage, Urgency
from disputeflow.domain.actions import Actor
from disputeflow.domain.policy import Target, TimeUnit
from disputeflow.privacy import ERASED, CaseFacts, mask_name, mask_phone, sees_caller, sees_id_number

DESCRIPTION_EXCERPT_CHARS = 120


# -- Pieces ------------------------------------------------------------------------------------


class Person(BaseModel):
    id: str
    name: str | None = None


class CallerPublic(BaseModel):
    """The caller as the reader may see them: in full for the people working the case, else masked."""

    name: str = Field(description="In full for the people working the case, else masked: `张*`")
    phone: str = Field(description="In full (E.164) for the people working the case, else masked: `138****8000`")
    id_number: str | None = Field(
        default=None, description="The identity card number: only for the legal-aid officers of the case's "
                                  "region on a legal-aid stage, and only when the caller gave it; absent otherwise")

    @model_serializer(mode="wrap")
    def _without_absent_id(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("id_number") is None:
            data.pop("id_number", None)
        return data


class _Discloses(BaseModel):
    """A response part that may carry caller data unmasked: remembers which fields, for the read log."""

    _disclosed: tuple[str, ...] = PrivateAttr(default=())

    def disclosed(self) -> list[tuple[str, tuple[str, ...]]]:
        """(case id, fields) served unmasked by this object; empty if all was masked."""
        return [(getattr(self, "case_id"), self._disclosed)] if self._disclosed else []


def caller_for(actor: Actor | None, facts: CaseFacts, *, name: str, phone: str,
               id_number: str | None = None) -> tuple[CallerPublic, tuple[str, ...]]:
    """The caller as `actor` may see them, and the fields disclosed unmasked."""
    disclosed: tuple[str, ...] = ()
    if name == ERASED:  # erased: nothing of the caller is left to show
        return CallerPublic(name=ERASED, phone=ERASED), ()
    if sees_caller(actor, facts):
        caller = CallerPublic(name=name, phone=phone)
        disclosed = ("name", "phone")
    else:
        caller = CallerPublic(name=mask_name(name), phone=mask_phone(phone))
    if id_number and sees_id_number(actor, facts):
        caller.id_number = id_number
        disclosed += ("id_number",)
    return caller, disclosed


class TaskPublic(BaseModel):
    key: str
    kind: str
    title: str
    assignee_role: Role
    assignee_id: str | None
    due_at: datetime | None
    created_at: datetime

    @classmethod
    def from_task(cls, task: CaseTask) -> TaskPublic:
        return cls(key=task.key, kind=task.kind, title=task.title, assignee_role=task.assignee_role,
                   assignee_id=task.assignee_id, due_at=task.due_at, created_at=task.created_at)

    @classmethod
    def from_record(cls, row: CaseTaskRecord) -> TaskPublic:
        return cls(key=row.task_id.split(":", 1)[1], kind=row.kind, title=row.title,
                   assignee_role=Role(row.assignee_role), assignee_id=row.assignee_id, due_at=row.due_at,
                   created_at=row.created_at)


class ExtensionRequestPublic(BaseModel):
    """An extension asked for and awaiting a supervisor (`decide_extension`)."""

    clock_id: str
    by: str = Field(examples=["5 working days"])
    reason: str
    requested_by: Person
    requested_at: datetime

    @classmethod
    def from_request(cls, asked: ExtensionRequest) -> ExtensionRequestPublic:
        return cls(clock_id=asked.clock_id, by=str(asked.by), reason=asked.reason,
                   requested_by=Person(id=asked.requested_by.user_id), requested_at=asked.requested_at)


class ClockPublic(BaseModel):
    clock_id: str = Field(description="Use this id in pause_clock, resume_clock, extend_clock and request_extension",
                          examples=["legal_aid_decision-3"])
    name: str
    title: str
    stage: Stage
    target: str = Field(examples=["7 working days"])
    status: Literal["running", "paused", "met", "cancelled"]
    started_at: datetime
    due_at: datetime
    breached: bool
    breached_at: datetime | None
    paused_at: datetime | None = None
    pause_reason: str | None = None

    @classmethod
    def from_clock(cls, clock: Clock) -> ClockPublic:
        pause = clock.pauses[-1] if clock.paused and clock.pauses else None
        return cls(clock_id=clock.clock_id, name=clock.name, title=clock.title, stage=clock.stage,
                   target=str(clock.target), status=clock.status.value, started_at=clock.started_at,
                   due_at=clock.due_at, breached=clock.breached, breached_at=clock.breached_at,
                   paused_at=pause.started_at if pause else None, pause_reason=pause.reason if pause else None)

    @classmethod
    def from_record(cls, row: ClockRecord) -> ClockPublic:
        return cls(clock_id=row.clock_id.split(":", 1)[1], name=row.name, title=row.title, stage=Stage(row.stage),
                   target=str(Target(amount=row.target, unit=TimeUnit(row.unit))), status=row.status,
                   started_at=row.started_at, due_at=row.due_at, breached=row.breached,
                   breached_at=row.breached_at, paused_at=row.paused_at, pause_reason=row.pause_reason)


class EventPublic(BaseModel):
    seq: int
    type: str = Field(examples=["mediator_assigned"])
    at: datetime
    stage: Stage = Field(description="Where the case stood after the event")
    actor_id: str | None = Field(description="None: the system (a timer, an automatic rule)")
    actor_role: Role | None
    data: dict[str, Any]

    @classmethod
    def from_event(cls, event: CaseEvent) -> EventPublic:
        return cls(seq=event.seq, type=event.type, at=event.at, stage=event.stage,
                   actor_id=event.actor.user_id if event.actor else None,
                   actor_role=event.actor.role if event.actor else None, data=event.data)

    @classmethod
    def from_record(cls, row: CaseEventRecord) -> EventPublic:
        return cls(seq=row.seq, type=row.type, at=row.at, stage=Stage(row.stage), actor_id=row.actor_id,
                   actor_role=Role(row.actor_role) if row.actor_role else None, data=row.data)


class CaseProgress(BaseModel):
    """Where each track of the process stands (live cases only)."""

    mediation: MediationProgress
    legal_aid: LegalAidProgress
    referral: dict[str, Any] | None
    escalation: Escalation | None


# -- Cases -------------------------------------------------------------------------------------


class CaseSummary(_Discloses):
    """One row of a listing. `caller_name` is masked for anyone not working the case."""

    case_id: str = Field(examples=["370102-20261130-0007"])
    stage: Stage
    phase: Phase
    region_code: str
    channel: Channel
    category: Category
    dispute_type: DisputeType
    urgency: Urgency
    special_groups: list[str]
    caller_name: str
    description_excerpt: str
    mediator_id: str | None
    lawyer_id: str | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    final_outcome: FinalOutcome | None
    breached: bool

    @classmethod
    def from_record(cls, row: CaseRecord, *, actor: Actor | None = None) -> CaseSummary:
        caller, disclosed = caller_for(actor, CaseFacts(Stage(row.stage), row.region_code, row.mediator_id),
                                       name=row.caller_name, phone=row.caller_phone)
        summary = cls(case_id=row.case_id, stage=Stage(row.stage), phase=Phase(row.phase), region_code=row.region_code,
                   channel=Channel(row.channel), category=Category(row.category),
                   dispute_type=DisputeType(row.dispute_type), urgency=Urgency(row.urgency),
                   special_groups=list(row.special_groups), caller_name=caller.name,
                   description_excerpt=row.description[:DESCRIPTION_EXCERPT_CHARS], mediator_id=row.mediator_id,
                   lawyer_id=row.lawyer_id, opened_at=row.opened_at, updated_at=row.updated_at,
                   closed_at=row.closed_at,
                   final_outcome=FinalOutcome(row.final_outcome) if row.final_outcome else None,
                   breached=row.breached)
        summary._disclosed = tuple(f for f in disclosed if f == "name")
        return summary


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class CaseDetail(_Discloses):
    """A case as it stands now."""

    case_id: str = Field(examples=["370102-20261130-0007"])
    source: Literal["workflow", "read_model"] = Field(
        description="workflow: live state; read_model: from the projected tables (a closed case, or an open one "
                    "whose workflow could not answer: see `as_of`)")
    as_of: datetime | None = Field(
        default=None, description="For a read_model answer: when the read model last heard from the case")
    stage: Stage
    phase: Phase
    opened_at: datetime
    stage_entered_at: datetime | None
    closed_at: datetime | None
    final_outcome: FinalOutcome | None
    region_code: str
    channel: Channel
    category: Category
    dispute_type: DisputeType
    urgency: Urgency
    special_groups: list[str]
    caller: CallerPublic
    description: str
    counterparty: str | None = None
    transfer_order_id: str | None = None
    policy_version: str
    breached: bool
    satisfaction: int | None
    mediator: Person | None
    lawyer: Person | None
    progress: CaseProgress | None = None
    tasks: list[TaskPublic] = Field(description="What must be done next, by whom, by when")
    clocks: list[ClockPublic]
    timeline: list[EventPublic]
    extension_requests: list[ExtensionRequestPublic] = Field(
        default_factory=list, description="Extensions asked for that await a supervisor's decision")
    possible_duplicates: list[str] = Field(
        default_factory=list,
        description="On registration: other open cases in your region from the same phone number",
        examples=[["370102-20261128-0003"]],
    )

    @classmethod
    def from_view(cls, view: CaseView, *, actor: Actor | None = None) -> CaseDetail:
        intake = view.intake
        caller, disclosed = caller_for(
            actor, CaseFacts(view.stage, intake.region_code, view.mediator.id if view.mediator else None),
            name=intake.caller.name, phone=intake.caller.phone, id_number=intake.caller.id_number)
        detail = cls(
            case_id=view.case_id, source="workflow", stage=view.stage, phase=view.phase, opened_at=view.opened_at,
            stage_entered_at=view.stage_entered_at, closed_at=view.closed_at, final_outcome=view.final_outcome,
            region_code=intake.region_code, channel=intake.channel, category=intake.category,
            dispute_type=intake.dispute_type, urgency=intake.urgency,
            special_groups=[g.value for g in intake.special_groups],
            caller=caller, description=intake.description,
            counterparty=intake.counterparty, transfer_order_id=intake.transfer_order_id,
            policy_version=view.policy_version, breached=view.breached, satisfaction=view.satisfaction,
            mediator=Person(id=view.mediator.id, name=view.mediator.name) if view.mediator else None,
            lawyer=Person(id=view.lawyer.id, name=view.lawyer.name) if view.lawyer else None,
            progress=CaseProgress(mediation=view.mediation, legal_aid=view.legal_aid, referral=view.referral,
                                  escalation=view.escalation),
            tasks=[TaskPublic.from_task(t) for t in view.tasks],
            clocks=[ClockPublic.from_clock(c) for c in view.clocks],
            timeline=[EventPublic.from_event(e) for e in view.timeline],
            extension_requests=[ExtensionRequestPublic.from_request(r) for r in view.extension_requests],
        )
        detail._disclosed = disclosed
        return detail

    @classmethod
    def from_rows(cls, rows: CaseRows, *, actor: Actor | None = None) -> CaseDetail:
        r = rows.record
        summary = CaseSummary.from_record(r)
        caller, disclosed = caller_for(actor, CaseFacts(summary.stage, r.region_code, r.mediator_id),
                                       name=r.caller_name, phone=r.caller_phone)
        detail = cls(
            case_id=r.case_id, source="read_model", as_of=r.updated_at, stage=summary.stage, phase=summary.phase, opened_at=r.opened_at,
            stage_entered_at=_stage_entered_at(rows.events), closed_at=r.closed_at,
            final_outcome=summary.final_outcome, region_code=r.region_code, channel=summary.channel,
            category=summary.category, dispute_type=summary.dispute_type, urgency=summary.urgency,
            special_groups=list(r.special_groups), caller=caller,
            description=r.description, policy_version=r.policy_version, breached=r.breached,
            satisfaction=r.satisfaction,
            mediator=Person(id=r.mediator_id, name=rows.mediator_name) if r.mediator_id else None,
            lawyer=Person(id=r.lawyer_id, name=rows.lawyer_name) if r.lawyer_id else None,
            tasks=[TaskPublic.from_record(t) for t in rows.open_tasks],
            clocks=[ClockPublic.from_record(c) for c in rows.clocks],
            timeline=[EventPublic.from_record(e) for e in rows.events],
        )
        detail._disclosed = disclosed
        return detail


def _stage_entered_at(events: list[CaseEventRecord]) -> datetime | None:
    """When the case entered the stage of its last event."""
    entered = None
    for previous, event in zip([None, *events], events):
        if previous is None or previous.stage != event.stage:
            entered = event.at
    return entered


# -- Inbox -------------------------------------------------------------------------------------


class InboxTask(_Discloses):
    task: TaskPublic
    case_id: str
    stage: Stage
    region_code: str
    category: Category
    dispute_type: DisputeType
    urgency: Urgency
    caller_name: str
    description_excerpt: str
    breached: bool
    opened_at: datetime

    @classmethod
    def from_rows(cls, task: CaseTaskRecord, case: CaseRecord, *, actor: Actor | None = None) -> InboxTask:
        s = CaseSummary.from_record(case, actor=actor)
        item = cls(task=TaskPublic.from_record(task), case_id=s.case_id, stage=s.stage, region_code=s.region_code,
                   category=s.category, dispute_type=s.dispute_type, urgency=s.urgency, caller_name=s.caller_name,
                   description_excerpt=s.description_excerpt, breached=s.breached, opened_at=s.opened_at)
        item._disclosed = s._disclosed
        return item


class InboxPage(BaseModel):
    items: list[InboxTask]
    total: int
    limit: int
    offset: int


# -- Notifications -----------------------------------------------------------------------------


class NotificationPublic(BaseModel):
    id: int
    case_id: str
    kind: str = Field(examples=["deadline_breached"], description=(
        "case_assigned, deadline_warning, deadline_breached, case_escalated, emergency_registered, "
        "caller_dissatisfied, legal_aid_refused, advance_aid_possible, assign_lawyer_manually"))
    recipient_role: Role
    recipient_id: str | None = Field(description="The person it is for; none: everyone of the role in the region")
    region_code: str
    payload: dict[str, Any] = Field(description="What happened: the clock, its due time, a reason...")
    created_at: datetime
    delivered_at: datetime | None = Field(description="When the webhook took it; none without a webhook")
    delivery_refused: str | None = Field(default=None, description=(
        "The webhook's answer when it refused this one for good (it is parked, not retried)"))
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @classmethod
    def from_rows(cls, message: OutboxMessage, ack: NotificationAck | None,
                  park: NotificationParked | None = None) -> NotificationPublic:
        assert message.id is not None
        return cls(id=message.id, case_id=message.case_id, kind=message.kind,
                   recipient_role=Role(message.recipient_role), recipient_id=message.recipient_id,
                   region_code=message.region_code, payload=message.payload, created_at=message.created_at,
                   delivered_at=message.sent_at, delivery_refused=park.reason if park else None,
                   acknowledged_by=ack.acknowledged_by if ack else None,
                   acknowledged_at=ack.acknowledged_at if ack else None)


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    total: int = Field(description="Notifications matching the filters")
    unacknowledged: int = Field(description="All of the caller's notifications not yet acknowledged")
    limit: int
    offset: int


# -- Audit -------------------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    id: int
    case_id: str
    event_seq: int
    event_type: str
    canonical: str = Field(description="The exact text the hash covers (canonical JSON)")
    prev_hash: str
    hash: str
    recorded_at: datetime

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> AuditEntryPublic:
        assert entry.id is not None
        return cls(id=entry.id, case_id=entry.case_id, event_seq=entry.event_seq, event_type=entry.event_type,
                   canonical=entry.canonical, prev_hash=entry.prev_hash, hash=entry.hash,
                   recorded_at=entry.recorded_at)
