"""The read log: who was served which case's caller data unmasked, or read its history, and when.

Written by the API before an answer with unmasked caller data leaves it (`record`); read by
auditors (`for_case`). Rows hold ids, roles, field names and route templates, never the data.
The table is append-only by convention: no route updates or deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from disputeflow.db.models import CallerDataRead
from disputeflow.domain.actions import Actor


@dataclass
class ReadPage:
    items: list[CallerDataRead]
    total: int


def record(session: Session, *, actor: Actor, disclosed: Iterable[tuple[str, Iterable[str]]], route: str,
           at: datetime) -> int:
    """One row per (case, fields) served unmasked; returns how many. The caller commits."""
    rows = [CallerDataRead(case_id=case_id, user_id=actor.user_id, role=actor.role.value,
                           region_code=actor.region_code or "", fields=",".join(fields), route=route[:120],
                           read_at=at)
            for case_id, fields in disclosed]
    session.add_all(rows)
    return len(rows)


READ_KINDS = ("caller", "timeline", "history", "payloads")


def record_access(session: Session, *, actor: Actor, case_ids: Iterable[str], kind: str, detail: str, route: str,
                  at: datetime) -> int:
    """One row per case whose history an auditor or supervisor read decrypted or downloaded (`kind`:
    "timeline", "history" or "payloads"; `detail`, in `fields`, says which part: "run 2", "3 payloads").
    Returns how many. The caller commits."""
    if kind not in READ_KINDS:
        raise ValueError(f"unknown kind of read {kind!r}")
    rows = [CallerDataRead(case_id=case_id, user_id=actor.user_id, role=actor.role.value,
                           region_code=actor.region_code or "", fields=detail[:64], kind=kind, route=route[:120],
                           read_at=at)
            for case_id in dict.fromkeys(case_ids)]
    session.add_all(rows)
    return len(rows)


def for_case(session: Session, case_id: str | None = None, *, user_id: str | None = None, kind: str | None = None,
             limit: int = 50, offset: int = 0) -> ReadPage:
    """Newest first, filtered by case and/or reader and/or kind."""
    conditions = []
    if kind is not None:
        conditions.append(CallerDataRead.kind == kind)
    if case_id is not None:
        conditions.append(CallerDataRead.case_id == case_id)
    if user_id is not None:
        conditions.append(CallerDataRead.user_id == user_id)
    total = session.exec(select(func.count()).select_from(CallerDataRead).where(*conditions)).one()
    items = list(session.exec(select(CallerDataRead).where(*conditions)
                              .order_by(CallerDataRead.read_at.desc(), CallerDataRead.id.desc())
                              .limit(limit).offset(offset)))
    return ReadPage(items=items, total=total)
