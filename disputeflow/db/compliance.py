"""Compliance counters, kept up to date with every write of a clock instead of recomputed from all clocks.

`ComplianceCount` holds, per clock name, region and period of the clocks' start (Asia/Shanghai day,
ISO week and month: each clock counts once at each granularity; and in its county, city and
province: 6-, 4- and 2-digit region codes, `LEVELS`), how many
started and how many are in each outcome of `disputeflow.db.reports` (met on time, met late,
breached and open, open on time, cancelled in time, cancelled after the due time).

They are maintained by a `before_flush` hook on every ORM session: a new clock adds itself to its
buckets; a changed clock moves from its old outcome to its new one (status, breach, due time and end
all count); a deleted clock takes itself out. So anything that writes `ClockRecord` through a
session keeps them exact without knowing about them. Writes that bypass the ORM add their rows with
`Counters`: the bulk seeder, and `apply_projection`, which writes in Core statements and moves each
clock it inserts or changes from its old outcome to its new one by the same rule (`outcome`). Migration 0003 fills them from the clocks a
database already has; 0008 counts them again with the city and province rows.

The increments are upserts (INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n), issued in
key order, so concurrent projections on PostgreSQL neither lose counts nor deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession

from disputeflow.db.models import ClockRecord, ComplianceCount
from disputeflow.domain.calendar import SHANGHAI

OUTCOMES = ("met_on_time", "met_late", "breached_open", "open_on_time", "cancelled", "cancelled_after_breach")
COUNTS = ("started", *OUTCOMES)
KINDS = ("day", "week", "month")


def outcome(status: str, breached: bool, due_at: datetime, ended_at: datetime | None) -> str:
    """Where a clock stands against its deadline (see `disputeflow.db.reports.ComplianceRow`)."""
    # Ended after the due time counts as breached even if the breach had not fired yet (an action
    # handled in the same instant as the timer, or while the worker was down).
    late = breached or (ended_at is not None and ended_at > due_at)
    if status == "met":
        return "met_late" if late else "met_on_time"
    if status == "cancelled":
        return "cancelled_after_breach" if late else "cancelled"
    return "breached_open" if breached else "open_on_time"


def week_label(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def month_label(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def bucket(kind: str, day: date) -> tuple[str, date, date]:
    """(label, first day, last day) of the day, ISO week or month `day` falls in."""
    if kind == "day":
        return day.isoformat(), day, day
    if kind == "week":
        first = day - timedelta(days=day.weekday())
        return week_label(day), first, first + timedelta(days=6)
    if kind == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return month_label(day), first, following - timedelta(days=1)
    raise ValueError(f"period must be day, week or month, got {kind!r}")


def local_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


Key = tuple[str, str, str, str]  # kind, period label, clock name, region code


LEVELS = (2, 4, 6)  # the region levels counted: province, city, county (digits of the code)


def _keys(name: str, region: str, started_at: datetime) -> Iterator[tuple[Key, dict[str, Any]]]:
    day = local_day(started_at)
    # Each clock counts in its county, its city and its province: a report by city or province
    # reads its own rows instead of adding up the counties'. (Region codes are 6 digits, as intake
    # checks them; any other code counts once, as itself.)
    regions = tuple(region[:level] for level in LEVELS) if len(region) == LEVELS[-1] else (region,)
    for kind in KINDS:
        label, first, last = bucket(kind, day)
        extra = {"first_day": first, "last_day": last,
                 "week": week_label(day) if kind == "day" else None,
                 "month": month_label(day) if kind == "day" else None}
        for code in regions:
            yield (kind, label, name, code), extra


class Counters:
    """Increments gathered in memory, then written in one go (also used by the bulk seeder)."""

    def __init__(self) -> None:
        self.counts: dict[Key, list[int]] = {}
        self.extra: dict[Key, dict[str, Any]] = {}

    def add(self, name: str, region: str, started_at: datetime, which: str, sign: int, started: bool) -> None:
        position = COUNTS.index(which)
        for key, extra in _keys(name, region, started_at):
            row = self.counts.get(key)
            if row is None:
                row = self.counts[key] = [0] * len(COUNTS)
                self.extra[key] = extra
            row[position] += sign
            if started:
                row[0] += sign

    def add_row(self, row: dict[str, Any]) -> None:
        """A new clock given as a row of `clocks` (column name -> value)."""
        self.add(row["name"], row["region_code"], row["started_at"],
                 outcome(row["status"], bool(row["breached"]), row["due_at"], row["ended_at"] or row["met_at"]),
                 +1, started=True)

    def merge(self, other: Counters) -> None:
        for key, values in other.counts.items():
            row = self.counts.get(key)
            if row is None:
                self.counts[key] = list(values)
                self.extra[key] = other.extra[key]
            else:
                for i, v in enumerate(values):
                    row[i] += v

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.counts):  # key order: concurrent writers lock rows in the same order
            values = self.counts[key]
            if not any(values):
                continue
            kind, period, clock, region = key
            out.append({"kind": kind, "period": period, "clock": clock, "region_code": region,
                        **self.extra[key], **dict(zip(COUNTS, values, strict=True))})
        return out

    def write(self, conn: Connection) -> int:
        """Add the gathered counts to the table; returns how many rows were touched."""
        rows = self.rows()
        if not rows:
            return 0
        statement = _upsert(conn.dialect.name)
        for start in range(0, len(rows), 2000):
            conn.execute(statement, rows[start:start + 2000])
        return len(rows)


@lru_cache(maxsize=4)
def _upsert(dialect: str) -> Any:
    """The increment statement (built once: building it cost more than running it, per projection)."""
    table = ComplianceCount.__table__
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    return insert.on_conflict_do_update(
        index_elements=["kind", "first_day", "clock", "region_code"],
        set_={name: table.c[name] + insert.excluded[name] for name in COUNTS},
    )


# -- Keeping them with every ORM write of a clock -------------------------------------------------


_FIELDS = ("name", "region_code", "started_at", "status", "breached", "due_at", "ended_at", "met_at")


def _stored(session: OrmSession, record: ClockRecord) -> dict[str, Any] | None:
    from sqlalchemy import select  # noqa: PLC0415

    row = session.connection().execute(
        select(*(ClockRecord.__table__.c[n] for n in _FIELDS))
        .where(ClockRecord.__table__.c.clock_id == inspect(record).identity[0])
    ).first()
    return dict(zip(_FIELDS, row, strict=True)) if row else None


def _state(record: ClockRecord, old: bool, session: OrmSession | None = None) -> tuple | None:
    """(name, region, started_at, outcome) of the clock before (old) or after this flush."""
    values: dict[str, Any] = {}
    state = inspect(record)
    for name in _FIELDS:
        if old:
            history = state.attrs[name].history
            if history.deleted:
                values[name] = history.deleted[0]
            elif history.unchanged:
                values[name] = history.unchanged[0]
            elif history.added and session is not None:
                # Set while expired: the old value was never loaded. Ask the database.
                stored = _stored(session, record)
                if stored is None:
                    return None
                values = stored
                break
            else:
                values[name] = getattr(record, name)
        else:
            values[name] = getattr(record, name)
    if values["started_at"] is None or values["due_at"] is None or values["status"] is None:
        return None
    ended = values["ended_at"] or values["met_at"]
    return (values["name"], values["region_code"], values["started_at"],
            outcome(values["status"], bool(values["breached"]), values["due_at"], ended))


def changes(new: Iterable[Any], dirty: Iterable[Any], deleted: Iterable[Any],
            session: OrmSession | None = None) -> Counters:
    counters = Counters()
    for record in new:
        if isinstance(record, ClockRecord) and (after := _state(record, old=False)):
            counters.add(*after, +1, started=True)
    for record in dirty:
        if not isinstance(record, ClockRecord):
            continue
        before, after = _state(record, old=True, session=session), _state(record, old=False)
        if before == after:
            continue
        if before:
            counters.add(*before, -1, started=True)
        if after:
            counters.add(*after, +1, started=True)
    for record in deleted:
        if isinstance(record, ClockRecord) and (before := _state(record, old=True, session=session)):
            counters.add(*before, -1, started=True)
    return counters


@event.listens_for(OrmSession, "before_flush")
def _count_clock_changes(session: OrmSession, _context: Any, _instances: Any) -> None:
    if not any(isinstance(o, ClockRecord) for o in (*session.new, *session.dirty, *session.deleted)):
        return
    counters = changes(session.new, session.dirty, session.deleted, session)
    if counters.counts:
        counters.write(session.connection())


def rebuild(conn: Connection, *, batch: int = 5000) -> int:
    """Recount every clock into the (emptied) table: migration 0003, or a repair by hand."""
    from sqlalchemy import delete, func, select  # noqa: PLC0415

    conn.execute(delete(ComplianceCount))
    counters = Counters()
    c = ClockRecord
    statement = select(c.name, c.region_code, c.started_at, c.status, c.breached, c.due_at,
                       func.coalesce(c.ended_at, c.met_at)).execution_options(yield_per=batch)
    for name, region, started_at, status, breached, due_at, ended_at in conn.execute(statement):
        counters.add(name, region, started_at, outcome(status, bool(breached), due_at, ended_at), +1, started=True)
    return counters.write(conn)
