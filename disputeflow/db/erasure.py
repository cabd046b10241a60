"""Erasure: anonymise a closed case's personal data in the read model, and record it in the audit chain.

What `erase_case` changes, in one transaction:

- `cases`: the caller's name and phone become `ERASED` (the phone's search digits are cleared), the
  description `ERASED`, the special groups emptied. The text search index follows by itself
  (`disputeflow.db.text_index`: SQLite's triggers, PostgreSQL's expression index). Ids, stages, dates, outcomes, the satisfaction
  score and the clocks stay: the compliance figures and the audit still add up.
- `case_events.data` and `outbox.payload`: every string that is not a plain token (an id, an enum
  value, a timestamp: ASCII letters, digits and `_:.+-` only, up to 64 characters) becomes
  `ERASED`: free text (notes, reasons, comments, answers) may hold anything staff typed.
- `notification_parked.reason` (a gateway's answer) of the case's notifications: `ERASED`.
- `intake_requests` of the case: deleted (their fingerprint is a hash of the intake body, and a hash
  of a phone number can be reversed by trying every number).

- `case_data_keys`: the case's data key is destroyed (`disputeflow.case_keys.destroy`): the payloads
  of its Temporal history and the free text of its audit entries, encrypted with it, can no longer
  be decrypted anywhere (crypto-erasure). Callers drop it from memory after the commit
  (`case_keys.forget_everywhere`).

Not changed: `caller_data_reads` (no caller data), and the audit log, which cannot be updated. An
erasure appends an entry to the chain (type `case_erased`, a negative event number: it is not an
event of the case's workflow) saying when, why, on whose authority and what was erased; it holds
no caller data. The chain still verifies: its entries hold the free text as ciphertext.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, delete, select

from disputeflow import case_keys
from disputeflow.db import audit
from disputeflow.db.models import (
    AuditEntry,
    CaseEventRecord,
    CaseRecord,
    IntakeRequest,
    NotificationParked,
    OutboxMessage,
)
from disputeflow.domain.actions import Actor
from disputeflow.privacy import ERASED  # one spelling for the mask and the eraser

TOKEN = re.compile(r"^[A-Za-z0-9_:.+\-]{0,64}$")


class ErasureReason(StrEnum):
    retention_expired = "retention_expired"  # the policy's retention period after closure has passed
    data_subject_request = "data_subject_request"  # the caller asked, and the request was verified
    legal_obligation = "legal_obligation"  # a court or authority ordered it


class CannotErase(ValueError):
    """The case is open (erasing it would stop its work), or does not exist."""


@dataclass(frozen=True)
class ErasureResult:
    case_id: str
    erased_now: bool  # False: it was erased before, nothing changed
    events: int = 0
    notifications: int = 0


def anonymised(value: Any) -> Any:
    """`value` with every string that is not a plain token replaced by `ERASED` (recursively)."""
    if isinstance(value, str):
        return value if TOKEN.match(value) else ERASED
    if isinstance(value, list):
        return [anonymised(v) for v in value]
    if isinstance(value, dict):
        return {k: anonymised(v) for k, v in value.items()}
    return value


def is_erased(record: CaseRecord) -> bool:
    return record.caller_name == ERASED


def erase_case(session: Session, case_id: str, *, now: datetime, reason: ErasureReason,
               by: Actor | None = None, reference: str | None = None) -> ErasureResult:
    """Anonymise one closed case (see the module's docstring); idempotent. Use a `write_session`
    (the caller commits: the read model and the audit entry change together or not at all)."""
    record = session.get(CaseRecord, case_id)
    if record is None:
        raise CannotErase(f"case {case_id} not found")
    if record.closed_at is None:
        raise CannotErase(f"case {case_id} is open; close it (withdraw) before erasing it")
    if is_erased(record):
        return ErasureResult(case_id=case_id, erased_now=False)
    record.caller_name, record.caller_phone, record.caller_phone_digits = ERASED, ERASED, None
    record.description, record.special_groups = ERASED, []
    session.add(record)
    events = list(session.exec(select(CaseEventRecord).where(CaseEventRecord.case_id == case_id)))
    for event in events:
        event.data = anonymised(event.data)
        session.add(event)
    messages = list(session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)))
    for message in messages:
        message.payload = anonymised(message.payload)
        session.add(message)
        parked = session.get(NotificationParked, message.id)
        if parked is not None:
            parked.reason = ERASED
            session.add(parked)
    session.exec(delete(IntakeRequest).where(IntakeRequest.case_id == case_id))
    case_keys.destroy(session, case_id, now=now)  # crypto-erasure: Temporal's payloads, the chain's free text
    earlier = session.exec(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.case_id == case_id, AuditEntry.event_seq < 0)).one()
    audit.append_events(session, [audit.AuditEvent(
        case_id=case_id, event_seq=-(earlier + 1), event_type="case_erased",
        payload={"case_id": case_id, "type": "case_erased", "at": now.isoformat(), "reason": reason.value,
                 "reference": reference, "by": by.user_id if by else None,
                 "by_role": by.role.value if by else "system",
                 "erased": ["cases.caller", "cases.description", "cases.special_groups", "case_events.data",
                            "outbox.payload", "intake_requests", "case_data_keys"]})], now=now)
    return ErasureResult(case_id=case_id, erased_now=True, events=len(events), notifications=len(messages))


def expired_cases(session: Session, *, now: datetime, retention: timedelta, limit: int = 100) -> list[str]:
    """Closed cases past `retention` since closing and not yet erased, oldest first."""
    rows = session.exec(select(CaseRecord.case_id).where(
        CaseRecord.closed_at.is_not(None), CaseRecord.closed_at < now - retention, CaseRecord.caller_name != ERASED,
    ).order_by(CaseRecord.closed_at, CaseRecord.case_id).limit(limit))
    return list(rows)
