"""Tables. The API never accepts or returns these directly: it has its own schemas."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator):
    """An aware datetime, stored in UTC and read back aware (UTC) on every backend.

    SQLite has no zoned type: plain DateTime(timezone=True) would store the local wall time and
    drop the offset. Naive datetimes are rejected: their instant is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _utc_column(**kw: Any) -> Any:
    return Field(sa_column=Column(UtcDateTime(), **kw))


def _json_column(default: Any) -> Any:
    return Field(default_factory=lambda: type(default)(), sa_column=Column(JSON, nullable=False))


# -- Reference data -------------------------------------------------------------------------


class Mediator(SQLModel, table=True):
    __tablename__ = "mediators"

    id: str = Field(primary_key=True, max_length=64)
    name: str
    region_code: str = Field(index=True, max_length=6)
    expertise: list[str] = _json_column([])  # dispute types
    senior: bool = False
    active: bool = True


class Lawyer(SQLModel, table=True):
    __tablename__ = "lawyers"

    id: str = Field(primary_key=True, max_length=64)
    name: str
    region_code: str = Field(index=True, max_length=6)
    specialties: list[str] = _json_column([])  # dispute types
    active: bool = True


# -- Read model (projected by the workflow's activities) -------------------------------------


class CaseRecord(SQLModel, table=True):
    __tablename__ = "cases"

    case_id: str = Field(primary_key=True, max_length=40)
    workflow_id: str = Field(unique=True, max_length=64)
    stage: str = Field(index=True)
    phase: str = Field(index=True)
    region_code: str = Field(index=True, max_length=6)
    channel: str
    category: str = Field(index=True)
    dispute_type: str = Field(index=True)
    urgency: str = Field(index=True)
    special_groups: list[str] = _json_column([])
    caller_name: str
    caller_phone: str
    description: str = Field(sa_column=Column(Text, nullable=False))
    mediator_id: str | None = Field(default=None, index=True)
    lawyer_id: str | None = Field(default=None, index=True)
    opened_at: datetime = _utc_column(nullable=False, index=True)
    updated_at: datetime = _utc_column(nullable=False)
    closed_at: datetime | None = _utc_column(nullable=True)
    final_outcome: str | None = None
    satisfaction: int | None = None
    policy_version: str
    breached: bool = Field(default=False, index=True)
    event_count: int = 0  # events projected so far: the projection's high-water mark


class CaseTaskRecord(SQLModel, table=True):
    __tablename__ = "case_tasks"

    task_id: str = Field(primary_key=True, max_length=96)  # "{case_id}:{key}"
    case_id: str = Field(index=True, max_length=40)
    kind: str
    title: str
    assignee_role: str = Field(index=True)
    assignee_id: str | None = Field(default=None, index=True)
    region_code: str = Field(index=True, max_length=6)
    due_at: datetime | None = _utc_column(nullable=True, index=True)
    status: str = Field(default="open", index=True)  # open | done
    created_at: datetime = _utc_column(nullable=False)
    completed_at: datetime | None = _utc_column(nullable=True)


class ClockRecord(SQLModel, table=True):
    __tablename__ = "clocks"

    clock_id: str = Field(primary_key=True, max_length=96)  # "{case_id}:{clock instance id}"
    case_id: str = Field(index=True, max_length=40)
    name: str = Field(index=True)
    title: str
    stage: str = Field(index=True)
    region_code: str = Field(index=True, max_length=6)
    assignee_id: str | None = Field(default=None, index=True)
    unit: str
    target: float
    started_at: datetime = _utc_column(nullable=False, index=True)
    due_at: datetime = _utc_column(nullable=False, index=True)
    next_warning_at: datetime | None = _utc_column(nullable=True)
    status: str = Field(index=True)  # running | paused | met | cancelled
    breached: bool = Field(default=False, index=True)
    breached_at: datetime | None = _utc_column(nullable=True)
    met_at: datetime | None = _utc_column(nullable=True)
    ended_at: datetime | None = _utc_column(nullable=True)  # met or cancelled: when (migration 0002)
    warnings_fired: int = 0
    paused_at: datetime | None = _utc_column(nullable=True)
    pause_reason: str | None = None
    policy_version: str


class CaseEventRecord(SQLModel, table=True):
    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_events_case_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True, max_length=40)
    seq: int
    type: str = Field(index=True)
    at: datetime = _utc_column(nullable=False, index=True)
    actor_id: str | None = None
    actor_role: str | None = None
    stage: str
    data: dict[str, Any] = _json_column({})


class OutboxMessage(SQLModel, table=True):
    """Notifications for people: read in the API (`GET /me/notifications`) and, where a webhook is
    configured, delivered to it by the worker's sender (`sent_at` records when)."""

    __tablename__ = "outbox"
    # The webhook sender asks for the oldest unsent one every second: an index of only those keeps
    # that lookup small however long the outbox grows.
    __table_args__ = (
        Index("ix_outbox_unsent", "id", sqlite_where=text("sent_at IS NULL"),
              postgresql_where=text("sent_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=160)
    case_id: str = Field(index=True, max_length=40)
    kind: str
    recipient_role: str
    recipient_id: str | None = None
    region_code: str = Field(max_length=6)
    payload: dict[str, Any] = _json_column({})
    created_at: datetime = _utc_column(nullable=False)
    sent_at: datetime | None = _utc_column(nullable=True)


class NotificationAck(SQLModel, table=True):
    """Someone took a notification in hand. One per message: for a message addressed to a role,
    the first person of that role to acknowledge it does so for all of them (as with an alert)."""

    __tablename__ = "notification_acks"

    outbox_id: int = Field(primary_key=True, foreign_key="outbox.id")
    acknowledged_by: str = Field(max_length=64)
    acknowledged_at: datetime = _utc_column(nullable=False)


class NotificationParked(SQLModel, table=True):
    """A notification the webhook refused for good (a 4xx answer other than 408 or 429): the sender
    passes over it, so one message the gateway cannot take does not hold up the ones after it.
    `disputeflow notifications redeliver` puts it back in line."""

    __tablename__ = "notification_parked"

    outbox_id: int = Field(primary_key=True, foreign_key="outbox.id")
    reason: str = Field(sa_column=Column(Text, nullable=False))
    parked_at: datetime = _utc_column(nullable=False)


# -- Audit trail -----------------------------------------------------------------------------


class AuditEntry(SQLModel, table=True):
    """One domain event, chained to the previous entry by SHA-256. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("case_id", "event_seq", name="uq_audit_case_event"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True, max_length=40)
    event_seq: int
    event_type: str
    canonical: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of the event
    prev_hash: str = Field(unique=True, max_length=64)  # unique: two entries cannot share a parent
    hash: str = Field(unique=True, max_length=64)
    recorded_at: datetime = _utc_column(nullable=False)


# -- Intake bookkeeping ----------------------------------------------------------------------


class IntakeRequest(SQLModel, table=True):
    """An Idempotency-Key seen on POST /cases, whose it is, and the case it opened.

    Keys are per user (`owner`, the user id of who registered): the same key from someone else is
    another key. A key lives `DISPUTEFLOW_INTAKE_KEY_TTL_HOURS` from `created_at`, then is deleted.
    """

    __tablename__ = "intake_requests"

    owner: str = Field(default="", primary_key=True, max_length=64)
    idempotency_key: str = Field(primary_key=True, max_length=200)
    case_id: str = Field(max_length=40)
    fingerprint: str = Field(max_length=64)  # SHA-256 of the request body
    created_at: datetime = _utc_column(nullable=False, index=True)


class CaseNumberCounter(SQLModel, table=True):
    """Per region and day, the last case number handed out."""

    __tablename__ = "case_counters"

    region_code: str = Field(primary_key=True, max_length=6)
    day: str = Field(primary_key=True, max_length=8)  # YYYYMMDD, Asia/Shanghai
    last: int = 0
