"""Tables. The API never accepts or returns these directly: it has its own schemas."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Date, DateTime, Index, LargeBinary, Text, TypeDecorator, UniqueConstraint, text
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


def phone_digits(phone: str | None) -> str | None:
    """The digits of an E.164 number as people type them: mainland numbers without +86, others without +."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[2:] if phone.startswith("+86") else digits


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


# Conditions of partial indexes, written exactly as the queries write them (disputeflow.db.reports,
# queries): SQLite uses a partial index only when the query repeats its condition term for term,
# with literals, not bound parameters.
OPEN_CLOCK = "status IN ('running', 'paused')"
OPEN_TASK = "status = 'open'"


# Indexes and tables that migrations make where the database can have them, and the models do not
# declare: PostgreSQL's trigram indexes for the text search of cases (migration 0009, when the server
# has pg_trgm); the bigram index of that search (migration 0010, `disputeflow.db.text_index`): on
# PostgreSQL an expression index, on SQLite an FTS5 table (and its own tables) with a table of row
# numbers, kept by triggers; PostgreSQL's index of the compliance counters by region level (migration
# 0011). The comparison of models and database (`migrate.differences`, autogenerate) skips them.
DATABASE_ONLY_INDEXES = frozenset({"ix_cases_description_trgm", "ix_cases_caller_name_trgm", "ix_cases_text_bigrams",
                                   "ix_compliance_counts_level"})
DATABASE_ONLY_TABLES = frozenset({"case_text", "case_text_rows", "case_text_data", "case_text_idx", "case_text_config"})


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's filter: everything but `DATABASE_ONLY_INDEXES` and `DATABASE_ONLY_TABLES`."""
    if type_ == "table":
        return name not in DATABASE_ONLY_TABLES
    if type_ == "index" and getattr(getattr(obj, "table", None), "name", None) in DATABASE_ONLY_TABLES:
        return False  # the indexes of those tables (their UNIQUE constraint's)
    return not (type_ == "index" and name in DATABASE_ONLY_INDEXES)


def _partial(name: str, *columns: str, sqlite_where: str, postgresql_where: str | None = None) -> Index:
    return Index(name, *columns, sqlite_where=text(sqlite_where), postgresql_where=text(postgresql_where or sqlite_where))


class CaseRecord(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        # Listings: newest first, keyset paging on (opened_at, case_id) (migration 0003).
        Index("ix_cases_opened_at_case_id", "opened_at", "case_id"),
        # A stage's, a type's... cases, newest first: the listing's order within each value, so that a
        # filter walks only its own cases (a common text none of them holds: all of them, not all
        # cases; migration 0011).
        Index("ix_cases_stage_opened_at", "stage", "opened_at", "case_id"),
        Index("ix_cases_phase_opened_at", "phase", "opened_at", "case_id"),
        Index("ix_cases_category_opened_at", "category", "opened_at", "case_id"),
        Index("ix_cases_dispute_type_opened_at", "dispute_type", "opened_at", "case_id"),
        Index("ix_cases_urgency_opened_at", "urgency", "opened_at", "case_id"),
        Index("ix_cases_breached_opened_at", "breached", "opened_at", "case_id"),
        Index("ix_cases_region_code_opened_at", "region_code", "opened_at", "case_id"),  # a county's
        Index("ix_cases_caller_phone", "caller_phone"),  # intake's duplicates, ?phone=
        Index("ix_cases_caller_phone_digits", "caller_phone_digits"),  # ?q=<phone>: prefix search
        # ?q=<text>: the bigram index of the name and the description, made by migration 0010 (on
        # PostgreSQL a GIN index, on SQLite an FTS5 table: DATABASE_ONLY_INDEXES and _TABLES).
    )

    case_id: str = Field(primary_key=True, max_length=40)
    workflow_id: str = Field(unique=True, max_length=64)
    stage: str
    phase: str
    region_code: str = Field(max_length=6)
    channel: str
    category: str
    dispute_type: str
    urgency: str
    special_groups: list[str] = _json_column([])
    caller_name: str
    caller_phone: str
    # The phone's digits as people type them, without +86 or the trunk 0 (mainland numbers) or the +
    # (others): what ?q=<phone> searches by prefix (migration 0003); `phone_digits(caller_phone)`.
    caller_phone_digits: str | None = Field(default=None, max_length=20)
    description: str = Field(sa_column=Column(Text, nullable=False))
    mediator_id: str | None = Field(default=None, index=True)
    lawyer_id: str | None = Field(default=None, index=True)
    opened_at: datetime = _utc_column(nullable=False)
    updated_at: datetime = _utc_column(nullable=False)
    closed_at: datetime | None = _utc_column(nullable=True)
    final_outcome: str | None = None
    satisfaction: int | None = None
    policy_version: str
    breached: bool = Field(default=False)
    event_count: int = 0  # events projected so far: the projection's high-water mark


class CaseTaskRecord(SQLModel, table=True):
    __tablename__ = "case_tasks"
    __table_args__ = (
        # Inboxes (migration 0003): a person's open tasks, a role's open tasks in a region, by due time.
        _partial("ix_case_tasks_open_assignee", "assignee_id", "due_at", "task_id", sqlite_where=OPEN_TASK),
        _partial("ix_case_tasks_open_role", "assignee_role", "region_code", "due_at", "task_id",
                 sqlite_where=OPEN_TASK),
    )

    task_id: str = Field(primary_key=True, max_length=96)  # "{case_id}:{key}"
    case_id: str = Field(index=True, max_length=40)
    kind: str
    title: str
    assignee_role: str  # not indexed alone (dropped in 0003): a handful of values
    assignee_id: str | None = Field(default=None, index=True)
    region_code: str = Field(index=True, max_length=6)
    due_at: datetime | None = _utc_column(nullable=True, index=True)
    # Not indexed alone (dropped in 0003): two values; without statistics SQLite's planner took it over
    # the partial indexes of open tasks.
    status: str = Field(default="open")  # open | done
    created_at: datetime = _utc_column(nullable=False)
    completed_at: datetime | None = _utc_column(nullable=True)


class ClockRecord(SQLModel, table=True):
    __tablename__ = "clocks"
    __table_args__ = (
        # Supervisors' boards (migration 0003), soonest due first: open clocks not breached (at risk:
        # due within the window), those of them with a warning fired, and breached clocks.
        _partial("ix_clocks_open_unbreached_due", "due_at", "clock_id",
                 sqlite_where=f"{OPEN_CLOCK} AND breached = 0", postgresql_where=f"{OPEN_CLOCK} AND NOT breached"),
        _partial("ix_clocks_open_warned_due", "due_at", "clock_id",
                 sqlite_where=f"{OPEN_CLOCK} AND breached = 0 AND warnings_fired > 0",
                 postgresql_where=f"{OPEN_CLOCK} AND NOT breached AND warnings_fired > 0"),
        _partial("ix_clocks_breached_due", "due_at", "clock_id", sqlite_where="breached = 1",
                 postgresql_where="breached"),
    )

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
    # status and breached are not indexed alone (dropped in 0003): a few values each, and without
    # statistics SQLite's planner took them over the partial indexes above.
    status: str  # running | paused | met | cancelled
    breached: bool = False
    breached_at: datetime | None = _utc_column(nullable=True)
    met_at: datetime | None = _utc_column(nullable=True)
    ended_at: datetime | None = _utc_column(nullable=True)  # met or cancelled: when (migration 0002)
    warnings_fired: int = 0
    paused_at: datetime | None = _utc_column(nullable=True)
    pause_reason: str | None = None
    policy_version: str


class ComplianceCount(SQLModel, table=True):
    """Compliance figures kept as counters: per period (a Shanghai day, ISO week or month of the clocks'
    start), clock name and county, how many clocks started and where each stands. Maintained with every
    write of a clock (`disputeflow.db.compliance`); read by `disputeflow.db.reports.compliance`."""

    __tablename__ = "compliance_counts"
    # Keyed, and on SQLite stored (WITHOUT ROWID), in the order reports read them: a range of periods
    # of one kind is one contiguous run of rows.
    __table_args__ = ({"sqlite_with_rowid": False},)

    kind: str = Field(primary_key=True, max_length=5)  # day | week | month
    first_day: date = Field(sa_column=Column(Date, primary_key=True))  # of the day, week or month
    clock: str = Field(primary_key=True, max_length=64)
    region_code: str = Field(primary_key=True, max_length=6)
    period: str = Field(max_length=10)  # 2026-11-05 | 2026-W45 | 2026-11
    last_day: date = Field(sa_column=Column(Date, nullable=False))
    week: str | None = Field(default=None, max_length=8)  # day rows: their ISO week and month, to fold
    month: str | None = Field(default=None, max_length=7)  # days into the partial weeks and months of a range
    started: int = 0
    met_on_time: int = 0
    met_late: int = 0
    breached_open: int = 0
    open_on_time: int = 0
    cancelled: int = 0
    cancelled_after_breach: int = 0


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


# -- Who read a caller's data -----------------------------------------------------------------


class CallerDataRead(SQLModel, table=True):
    """Someone was served a case's caller data unmasked (name and phone, or the identity card
    number): who, in which role and region, which case, which fields, through which route, when.
    Written before the answer leaves the API (`disputeflow.db.reads`); auditors read it at
    `GET /audit/reads`. Holds no caller data itself."""

    __tablename__ = "caller_data_reads"
    __table_args__ = (Index("ix_caller_data_reads_case_read_at", "case_id", "read_at"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(max_length=40)
    user_id: str = Field(index=True, max_length=64)
    role: str = Field(max_length=32)
    region_code: str = Field(max_length=6)
    fields: str = Field(max_length=64)  # "name,phone" or "name,phone,id_number"; for the other kinds, see `kind`
    # What was read: "caller" (an answer with the caller's name and phone unmasked), "timeline" (the case's
    # timeline, decrypted from Temporal's history), "history" (the raw history, downloaded), "payloads"
    # (payloads of the case decrypted through POST /codec/decode).
    kind: str = Field(default="caller", max_length=16, sa_column_kwargs={"server_default": "caller"})
    route: str = Field(max_length=120)  # the route's template, e.g. "GET /cases/{case_id}"; never a query string
    read_at: datetime = _utc_column(nullable=False, index=True)


# -- Each case's data key (crypto-erasure) ---------------------------------------------------------


class CaseDataKey(SQLModel, table=True):
    """The key that encrypts one case's payloads in Temporal and the free text of its audit entries
    (`disputeflow.case_keys`), stored wrapped (AES-256-GCM) by a payload master key. Erasing the
    case destroys it: `wrapped_key` becomes NULL and `destroyed_at` is set, and what it encrypted
    can no longer be read anywhere."""

    __tablename__ = "case_data_keys"

    case_id: str = Field(primary_key=True, max_length=40)
    key_id: str = Field(max_length=40)  # "dk-<hex>": named in each payload it encrypts
    master_key_id: str | None = Field(default=None, max_length=64)  # the payload key that wraps it
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _utc_column(nullable=False)
    destroyed_at: datetime | None = _utc_column(nullable=True)


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
