"""Intake bookkeeping: human-readable case numbers and the Idempotency-Keys of POST /cases.

A case number reads `{region}-{YYYYMMDD}-{NNNN}`, e.g. `370102-20261130-0007`: the case's county,
its Asia/Shanghai opening day and a per-county-per-day counter. Numbers are unique but not gapless:
a number handed out to a request that then fails (Temporal unreachable) is not given back, since
another request may already hold the next one. The gap is harmless and shows in no listing.

Run these inside `write_session` (SQLite: BEGIN IMMEDIATE; PostgreSQL: the counter and the key
are claimed with single upsert statements, safe under concurrent requests).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from disputeflow.db.engine import write_session
from disputeflow.db.models import CaseNumberCounter, IntakeRequest
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.intake import Intake


DEFAULT_KEY_TTL = timedelta(hours=24)


class IntakeKeyReused(Exception):
    """An Idempotency-Key already used by the same user for a different intake.

    The message names neither the key nor the case (`case_id` is kept for the caller's own use)."""

    def __init__(self, key: str, case_id: str) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different body; send the same body to repeat "
            "that request, or use a new key for a new case"
        )
        self.key, self.case_id = key, case_id


@dataclass(frozen=True)
class IntakeClaim:
    case_id: str
    created: bool  # False: the key was seen before, with the same body
    registered_at: datetime  # when the call was first registered: the case's clocks start then


def intake_fingerprint(intake: Intake) -> str:
    """SHA-256 of the validated intake in canonical JSON: formatting and key order do not count."""
    canonical = json.dumps(intake.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _day(now: datetime) -> str:
    return now.astimezone(SHANGHAI).strftime("%Y%m%d")


def reserve_case_numbers(session: Session, *, region_code: str, day: str, count: int) -> range:
    """Take the next `count` numbers of `region_code` on `day`, atomically."""
    stmt = (
        _insert(session)(CaseNumberCounter)
        .values(region_code=region_code, day=day, last=count)
        .on_conflict_do_update(index_elements=["region_code", "day"], set_={"last": CaseNumberCounter.last + count})
        .returning(CaseNumberCounter.last)
    )
    last = session.execute(stmt).scalar_one()
    return range(last - count + 1, last + 1)


def case_number(region_code: str, day: str, number: int) -> str:
    """`370102-20261130-0007`: the region, the Shanghai day and the day's count."""
    return f"{region_code}-{day}-{number:04d}"


def next_case_id(session: Session, *, region_code: str, now: datetime) -> str:
    """Allocate the next number of `region_code` on `now`'s Shanghai day, atomically."""
    day = _day(now)
    (number,) = reserve_case_numbers(session, region_code=region_code, day=day, count=1)
    return case_number(region_code, day, number)


class CaseNumbers:
    """Case numbers for intakes without an Idempotency-Key, handed out from blocks reserved in the
    database: one write per `block` cases instead of one per case, so intake rarely waits for the
    read model's writers (on SQLite they share one lock). Numbers stay unique; a block's unused
    numbers are lost when the process stops (numbers are unique, not gapless), and with several API
    processes each counts up within its own blocks."""

    def __init__(self, engine: Engine, *, block: int = 10,
                 on_block: Callable[[list[str]], None] | None = None) -> None:
        self._engine, self._block = engine, block
        self._reserved: dict[tuple[str, str], Iterator[int]] = {}
        self._lock = threading.Lock()
        self._on_block = on_block  # told each new block's case numbers (to make their data keys ahead)

    def reserved(self, *, region_code: str, now: datetime) -> str | None:
        """A number from a block already reserved, without waiting: None when the block is used up
        or another thread is reserving one (then `next`, in a thread, reserves or waits)."""
        key = (region_code, _day(now))
        if not self._lock.acquire(blocking=False):
            return None
        try:
            number = next(self._reserved.get(key, iter(())), None)
        finally:
            self._lock.release()
        return None if number is None else case_number(region_code, key[1], number)

    def next(self, *, region_code: str, now: datetime) -> str:
        key = (region_code, _day(now))
        with self._lock:
            number = next(self._reserved.get(key, iter(())), None)
            if number is None:
                with write_session(self._engine) as session:
                    block = reserve_case_numbers(session, region_code=region_code, day=key[1], count=self._block)
                self._reserved = {k: v for k, v in self._reserved.items() if k[1] == key[1]}  # forget past days
                self._reserved[key] = iter(block)
                number = next(self._reserved[key])
                if self._on_block is not None:
                    self._on_block([case_number(region_code, key[1], n) for n in block])
        return case_number(region_code, key[1], number)


def claim_intake_key(session: Session, *, key: str, fingerprint: str, region_code: str, now: datetime,
                     owner: str = "", ttl: timedelta = DEFAULT_KEY_TTL) -> IntakeClaim:
    """The case this key of `owner` (the user id of who registers) stands for: a new case number
    the first time, the same one after, until the key is older than `ttl`.

    Keys are per owner: the same key from another user is another key. Expired keys (everyone's)
    are deleted here first, which is cheap: `created_at` is indexed and each claim removes only
    what expired since the last one. Raises `IntakeKeyReused` when the owner recorded the key with
    a different body.
    """
    delete_expired_intake_keys(session, now=now, ttl=ttl)
    existing = session.get(IntakeRequest, (owner, key))
    if existing is None:
        case_id = next_case_id(session, region_code=region_code, now=now)
        session.execute(
            _insert(session)(IntakeRequest)
            .values(owner=owner, idempotency_key=key, case_id=case_id, fingerprint=fingerprint, created_at=now)
            .on_conflict_do_nothing(index_elements=["owner", "idempotency_key"])
        )
        # A concurrent request with the same key may have won the insert: read what stands.
        existing = session.get(IntakeRequest, (owner, key), populate_existing=True)
        assert existing is not None
        if existing.case_id == case_id:
            return IntakeClaim(case_id=case_id, created=True, registered_at=now)
    if existing.fingerprint != fingerprint:
        raise IntakeKeyReused(key, existing.case_id)
    return IntakeClaim(case_id=existing.case_id, created=False, registered_at=_aware(existing.created_at))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every instant here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def delete_expired_intake_keys(session: Session, *, now: datetime, ttl: timedelta = DEFAULT_KEY_TTL) -> int:
    """Delete every key older than `ttl`; how many went."""
    result = session.execute(delete(IntakeRequest).where(IntakeRequest.created_at <= now - ttl))
    return result.rowcount or 0


def release_intake_key(session: Session, *, key: str, case_id: str, owner: str = "") -> None:
    """Forget a key whose case never started, so nothing half-created remains (its number stays used)."""
    session.execute(delete(IntakeRequest).where(IntakeRequest.owner == owner, IntakeRequest.idempotency_key == key,
                                                IntakeRequest.case_id == case_id))
