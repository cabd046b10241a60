"""Notifications from the outbox: who may read which, acknowledging them, and taking the next one
to deliver.

A notification is addressed to a role, and either to one person (`recipient_id`) or to everyone
of that role in the case's region. A person reads the ones addressed to them by name, and those
addressed to their role in their region; a mediator only those addressed to them by name, since
a mediator sees only the cases assigned to them.

Acknowledging is one per notification: for one addressed to a role, the first person to take it
in hand does so for everyone of that role, as with an alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from disputeflow.db.engine import is_sqlite, write_session
from disputeflow.db.models import NotificationAck, OutboxMessage

MAX_PAGE = 100


@dataclass(frozen=True)
class Reader:
    """The person reading: from their token."""

    user_id: str
    role: str
    region_prefix: str


@dataclass
class NotificationPage:
    items: list[tuple[OutboxMessage, NotificationAck | None]]
    total: int  # matching the filters
    unacknowledged: int  # of all the reader's notifications, whatever the filters


def _addressed_to(reader: Reader):
    o = OutboxMessage
    by_name = o.recipient_id == reader.user_id
    if reader.role == "mediator":
        return and_(o.recipient_role == reader.role, by_name)
    to_role_here = and_(o.recipient_id.is_(None), o.region_code.startswith(reader.region_prefix, autoescape=True))
    return and_(o.recipient_role == reader.role, or_(by_name, to_role_here))


def _joined(reader: Reader):
    return (
        select(OutboxMessage, NotificationAck)
        .join(NotificationAck, NotificationAck.outbox_id == OutboxMessage.id, isouter=True)
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
    return NotificationPage(items=[(message, ack) for message, ack in rows], total=total,
                            unacknowledged=unacknowledged)


def _one(session: Session, reader: Reader, outbox_id: int) -> tuple[OutboxMessage, NotificationAck | None] | None:
    row = session.exec(_joined(reader).where(OutboxMessage.id == outbox_id)).first()
    return None if row is None else (row[0], row[1])


def acknowledge(engine: Engine, reader: Reader, outbox_id: int, *,
                now: datetime) -> tuple[OutboxMessage, NotificationAck] | None:
    """Take a notification in hand. None if the reader may not see it (or it does not exist).

    Acknowledging again, by anyone, changes nothing: the first acknowledgement stands and is
    returned.
    """
    try:
        with write_session(engine) as session:
            found = _one(session, reader, outbox_id)
            if found is None:
                return None
            message, ack = found
            if ack is None:
                ack = NotificationAck(outbox_id=outbox_id, acknowledged_by=reader.user_id, acknowledged_at=now)
                session.add(ack)
                session.flush()
            session.expunge_all()
            return message, ack
    except IntegrityError:  # someone else acknowledged it in the same instant (PostgreSQL)
        with Session(engine) as session:
            found = _one(session, reader, outbox_id)
            assert found is not None and found[1] is not None
            session.expunge_all()
            return found[0], found[1]


# -- Delivery ------------------------------------------------------------------------------------


def next_unsent():
    """The query for the oldest notification not yet delivered."""
    return select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(1)


def deliver_next(engine: Engine, send: Callable[[OutboxMessage], None], *, now: Callable[[], datetime]) -> bool:
    """Send the oldest undelivered notification with `send` and record it as sent. False if there
    was none. An exception from `send` propagates and the notification stays undelivered.

    PostgreSQL: the row is locked (FOR NO KEY UPDATE SKIP LOCKED) while it is sent, so several
    senders never send the same notification at once (nor keep their order between them). SQLite: one sender (the worker) is assumed. Either
    way delivery is at least once: a crash between sending and recording sends it again, with the
    same idempotency key.
    """
    if is_sqlite(engine):
        with Session(engine) as session:
            message = session.exec(next_unsent()).first()
            if message is None:
                return False
            session.expunge(message)
        send(message)
        with write_session(engine) as session:
            session.exec(update(OutboxMessage).where(OutboxMessage.id == message.id, OutboxMessage.sent_at.is_(None))
                         .values(sent_at=now()))
        return True
    with Session(engine) as session:
        # NO KEY UPDATE: an acknowledgement (a key share through its foreign key) never waits on it.
        message = session.exec(next_unsent().with_for_update(skip_locked=True, key_share=True)).first()
        if message is None:
            return False
        send(message)
        message.sent_at = now()
        session.commit()
    return True


def undelivered(session: Session) -> tuple[int, datetime | None]:
    """How many notifications wait for delivery, and since when the oldest has."""
    count, oldest = session.exec(
        select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.sent_at.is_(None))
    ).one()
    return count, oldest
