"""Notifications from the outbox: who may read which, acknowledging them, and taking the next one
to deliver.

A notification is addressed to a role, and either to one person (`recipient_id`) or to everyone
of that role in the case's region. A person reads the ones addressed to them by name, and those
addressed to their role in their region; a mediator only those addressed to them by name about
cases assigned to them now, since a mediator sees only those cases (reassigned, the notes go too).

Acknowledging is one per notification: for one addressed to a role, the first person to take it
in hand does so for everyone of that role, as with an alert.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_, delete, exists, func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from disputeflow.db.engine import is_sqlite, write_session
from disputeflow.db.models import CaseRecord, NotificationAck, NotificationParked, OutboxMessage
from disputeflow.domain.enums import Role

MAX_PAGE = 100


@dataclass(frozen=True)
class Reader:
    """The person reading: from their token."""

    user_id: str
    role: str
    region_prefix: str


Row = tuple[OutboxMessage, NotificationAck | None, NotificationParked | None]


@dataclass
class NotificationPage:
    items: list[Row]
    total: int  # matching the filters
    unacknowledged: int  # of all the reader's notifications, whatever the filters


def _addressed_to(reader: Reader):
    o = OutboxMessage
    by_name = o.recipient_id == reader.user_id
    if reader.role == "mediator":
        # Only while the case is still theirs: once reassigned, its notes go with it.
        still_theirs = exists().where(CaseRecord.case_id == o.case_id, CaseRecord.mediator_id == reader.user_id)
        return and_(o.recipient_role == reader.role, by_name, still_theirs)
    to_role_here = and_(o.recipient_id.is_(None), o.region_code.startswith(reader.region_prefix, autoescape=True))
    return and_(o.recipient_role == reader.role, or_(by_name, to_role_here))


def _joined(reader: Reader):
    return (
        select(OutboxMessage, NotificationAck, NotificationParked)
        .join(NotificationAck, NotificationAck.outbox_id == OutboxMessage.id, isouter=True)
        .join(NotificationParked, NotificationParked.outbox_id == OutboxMessage.id, isouter=True)
        .where(_addressed_to(reader))
    )


def list_notifications(session: Session, reader: Reader, *, unacknowledged_only: bool = False,
                       kind: str | None = None, case_id: str | None = None, limit: int = 50,
                       offset: int = 0) -> NotificationPage:
    """The reader's notifications, newest first."""
    everything = _joined(reader)
    unacknowledged = session.exec(
        select(func.count()).select_from(everything.where(NotificationAck.outbox_id.is_(None)).subquery())
    ).one()
    query = everything
    if unacknowledged_only:
        query = query.where(NotificationAck.outbox_id.is_(None))
    if kind is not None:
        query = query.where(OutboxMessage.kind == kind)
    if case_id is not None:
        query = query.where(OutboxMessage.case_id == case_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(OutboxMessage.id.desc()).limit(max(1, min(limit, MAX_PAGE))).offset(offset))
    return NotificationPage(items=[(message, ack, park) for message, ack, park in rows], total=total,
                            unacknowledged=unacknowledged)


def _one(session: Session, reader: Reader, outbox_id: int) -> Row | None:
    row = session.exec(_joined(reader).where(OutboxMessage.id == outbox_id)).first()
    return None if row is None else (row[0], row[1], row[2])


def acknowledge(engine: Engine, reader: Reader, outbox_id: int, *, now: datetime) -> Row | None:
    """Take a notification in hand. None if the reader may not see it (or it does not exist).

    Acknowledging again, by anyone, changes nothing: the first acknowledgement stands and is
    returned.
    """
    try:
        with write_session(engine) as session:
            found = _one(session, reader, outbox_id)
            if found is None:
                return None
            message, ack, park = found
            if ack is None:
                ack = NotificationAck(outbox_id=outbox_id, acknowledged_by=reader.user_id, acknowledged_at=now)
                session.add(ack)
                session.flush()
            session.expunge_all()
            return message, ack, park
    except IntegrityError:  # someone else acknowledged it in the same instant (PostgreSQL)
        with Session(engine) as session:
            found = _one(session, reader, outbox_id)
            assert found is not None and found[1] is not None
            session.expunge_all()
            return found


# -- Delivery ------------------------------------------------------------------------------------


class Refused(Exception):
    """Raised by a sender for a notification the other side will never take (not worth retrying)."""


Delivered = Literal["sent", "parked"]


def next_unsent():
    """The query for the oldest notification not yet delivered nor parked."""
    parked = exists().where(NotificationParked.outbox_id == OutboxMessage.id)
    return (select(OutboxMessage).where(OutboxMessage.sent_at.is_(None), ~parked)
            .order_by(OutboxMessage.id).limit(1))


def _park(session: Session, message: OutboxMessage, reason: str, at: datetime) -> None:
    assert message.id is not None
    session.add(NotificationParked(outbox_id=message.id, reason=reason[:1000], parked_at=at))


def deliver_next(engine: Engine, send: Callable[[OutboxMessage], None], *,
                 now: Callable[[], datetime]) -> Delivered | None:
    """Send the oldest undelivered notification with `send` and record it as sent; None if there
    was none. If `send` raises `Refused` the notification is parked instead, and the next one's
    turn comes. Any other exception propagates and the notification stays first in line.

    PostgreSQL: the row is locked (FOR NO KEY UPDATE SKIP LOCKED) while it is sent, so several
    senders never send the same notification at once (nor keep their order between them).
    SQLite: one sender at a time per database file, by a lock on a file beside it; a sender that
    finds it taken is told None (another is at work) and comes back on its next round. Either way
    delivery is at least once: a crash between sending and recording sends it again, with the same
    idempotency key.
    """
    if is_sqlite(engine):
        with _sole_sqlite_sender(engine) as alone:
            return _deliver_next_on_sqlite(engine, send, now=now) if alone else None
    with Session(engine) as session:
        # NO KEY UPDATE: an acknowledgement (a key share through its foreign key) never waits on it.
        message = session.exec(next_unsent().with_for_update(of=OutboxMessage, skip_locked=True,
                                                             key_share=True)).first()
        if message is None:
            return None
        try:
            send(message)
        except Refused as refusal:
            _park(session, message, str(refusal), now())
            session.commit()
            return "parked"
        message.sent_at = now()
        session.commit()
    return "sent"


@contextmanager
def _sole_sqlite_sender(engine: Engine) -> Iterator[bool]:
    """Whether this sender may deliver from the SQLite file now: an exclusive, non-blocking lock on
    `<database>.sender.lock`, released on exit (or by the system when the process dies). An
    in-memory database has one process, hence one sender."""
    database = engine.url.database
    if not database or database == ":memory:":
        yield True
        return
    with os.fdopen(os.open(f"{database}.sender.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _deliver_next_on_sqlite(engine: Engine, send: Callable[[OutboxMessage], None], *,
                            now: Callable[[], datetime]) -> Delivered | None:
    with Session(engine) as session:
        message = session.exec(next_unsent()).first()
        if message is None:
            return None
        session.expunge(message)
    try:
        send(message)
    except Refused as refusal:
        with write_session(engine) as session:
            _park(session, message, str(refusal), now())
        return "parked"
    with write_session(engine) as session:
        session.exec(update(OutboxMessage).where(OutboxMessage.id == message.id, OutboxMessage.sent_at.is_(None))
                     .values(sent_at=now()))
    return "sent"


def parked(session: Session) -> list[tuple[OutboxMessage, NotificationParked]]:
    """Parked notifications, oldest first."""
    rows = session.exec(select(OutboxMessage, NotificationParked)
                        .join(NotificationParked, NotificationParked.outbox_id == OutboxMessage.id)
                        .order_by(OutboxMessage.id))
    return [(message, park) for message, park in rows]


def unpark(engine: Engine, outbox_ids: list[int] | None = None) -> int:
    """Put parked notifications back in line (all of them when `outbox_ids` is None); how many."""
    with write_session(engine) as session:
        statement = delete(NotificationParked)
        if outbox_ids is not None:
            statement = statement.where(NotificationParked.outbox_id.in_(outbox_ids))
        return session.exec(statement).rowcount


def undelivered(session: Session) -> tuple[int, datetime | None]:
    """How many notifications wait for delivery (parked ones aside), and since when the oldest has."""
    count, oldest = session.exec(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.sent_at.is_(None), ~exists().where(NotificationParked.outbox_id == OutboxMessage.id))
    ).one()
    return count, oldest


def add_system_notice(session: Session, *, case_id: str, region_code: str, kind: str, key: str,
                      payload: dict, now: datetime) -> bool:
    """A notice to the region's supervisors that does not come from a case's own snapshot (the read
    model refuses it); written once per `key`. True if it was new."""
    if session.exec(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)).first() is not None:
        return False
    session.add(OutboxMessage(dedupe_key=key, case_id=case_id, kind=kind, recipient_role=Role.supervisor.value,
                              region_code=region_code, payload=payload, created_at=now))
    return True
