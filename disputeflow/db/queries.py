"""Reads of the read model for the API: case listings and search, inboxes, one case's rows.

Nothing here asks Temporal: listings and inboxes come from the projected tables only. Every
function takes the caller's scope as plain arguments (`mediator_id`: only cases assigned to that
mediator; `region_prefix`: only cases whose region code starts with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, bindparam, func, literal_column, or_
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from disputeflow.db import text_index
from disputeflow.db.models import CaseEventRecord, CaseRecord, CaseTaskRecord, ClockRecord, Lawyer, Mediator
from disputeflow.domain.calendar import SHANGHAI

MAX_PAGE = 100
LIKE_ESCAPE = "\\"


class InvalidCursor(ValueError):
    """A listing cursor this module did not write (or one for a different ordering)."""


@dataclass(frozen=True)
class CaseFilters:
    stage: str | None = None
    phase: str | None = None
    region_prefix: str | None = None
    urgency: str | None = None
    category: str | None = None
    dispute_type: str | None = None
    assignee_id: str | None = None  # the mediator or the lawyer
    breached: bool | None = None
    opened_from: date | None = None  # Asia/Shanghai days, both inclusive
    opened_to: date | None = None
    text: str | None = None  # in the description or the caller's name
    caller_phone: str | None = None  # E.164, as intake stores it


@dataclass(frozen=True)
class Scope:
    mediator_id: str | None = None
    region_prefix: str | None = None


@dataclass
class CasePage:
    items: list[CaseRecord]
    next_cursor: str | None


@dataclass
class CaseRows:
    """Everything the read model holds about one case."""

    record: CaseRecord
    events: list[CaseEventRecord] = field(default_factory=list)
    clocks: list[ClockRecord] = field(default_factory=list)
    open_tasks: list[CaseTaskRecord] = field(default_factory=list)
    mediator_name: str | None = None
    lawyer_name: str | None = None


# -- Cursors -----------------------------------------------------------------------------------


# A cursor is the last row's place in the order: opened_at in microseconds since the epoch (UTC), a
# dot, its case number. Every string of this shape is a place to continue from (possibly past the
# end: an empty page), so the listing's documented pattern says exactly which cursors it takes.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[A-Za-z0-9][A-Za-z0-9-]{0,39}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(record: CaseRecord) -> str:
    opened_at = record.opened_at if record.opened_at.tzinfo else record.opened_at.replace(tzinfo=timezone.utc)
    return f"{(opened_at - _EPOCH) // _MICROSECOND}.{record.case_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if re.fullmatch(CURSOR_PATTERN, cursor, flags=re.ASCII) is None:
        raise InvalidCursor("not a cursor from this listing; start again without one")
    micros, case_id = cursor.split(".", 1)
    return _EPOCH + int(micros) * _MICROSECOND, case_id


# -- Conditions ------------------------------------------------------------------------------


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's own wildcards in `text` taken literally."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"


PHONE_QUERY = re.compile(r"^\+?[0-9][0-9 ()\-]{5,30}$")
MIN_PHONE_DIGITS = 7


def phone_query(text: str) -> str | None:
    """The phone digits to search for when a search text is a phone number (or the start of one):
    7 digits or more, with only spaces, dashes and brackets besides; None for any other text.

    Mainland numbers are matched without +86 / 0086 and without the trunk 0 of an area code, as
    `models.phone_digits` stores them: "+86 138-0013-8000", "13800138000" and "1380013" all find
    +8613800138000, "0531-8601 2348" finds +8653186012348."""
    text = text.strip()
    if not PHONE_QUERY.match(text):
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < MIN_PHONE_DIGITS:
        return None
    if text.startswith("+"):
        return digits[2:] if digits.startswith("86") else digits
    if digits.startswith("0086"):
        return digits[4:]
    return digits[1:] if digits.startswith("0") else digits


def _prefix_range(column, prefix: str) -> list:
    """column starts with `prefix` (digits), as a range an ordinary B-tree index serves on both
    databases (LIKE 'x%' does not: SQLite's LIKE is case-insensitive, PostgreSQL's collation not C)."""
    conditions = [column >= prefix]
    stripped = prefix.rstrip("9")
    if stripped:
        conditions.append(column < stripped[:-1] + str(int(stripped[-1]) + 1))
    return conditions


def _shanghai_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=SHANGHAI)


COUNTY_CODE_LENGTH = 6  # a region code of a county: the longest there is (api.auth.REGION_PATTERN)


def _in_region(column, prefix: str, *, as_range: bool = False) -> list:
    """`column` (a region code) within the region `prefix`, as conditions. A county's code is the
    whole code: equality, which an index beginning with the region serves in that index's order
    (the listing's, the inbox's). A city or a province: `LIKE 'prefix%'`, or with `as_range` a range
    an index on the region seeks to (`_prefix_range`; region codes are digits)."""
    if prefix.isdigit() and len(prefix) == COUNTY_CODE_LENGTH:
        return [column == prefix]
    if as_range and prefix.isdigit():
        return _prefix_range(column, prefix)
    return [column.startswith(prefix, autoescape=True)]


def _scope_conditions(scope: Scope, region_column, mediator_column) -> list:
    conditions = []
    if scope.mediator_id is not None:
        conditions.append(mediator_column == scope.mediator_id)
    if scope.region_prefix:
        # LIKE, not a range: a province's prefix holds every case, and SQLite's planner, without
        # statistics of ranges, would then read them through the region index and sort them all.
        conditions.extend(_in_region(region_column, scope.region_prefix))
    return conditions


def _case_conditions(f: CaseFilters) -> list:
    c = CaseRecord
    conditions = []
    for column, value in ((c.stage, f.stage), (c.phase, f.phase), (c.urgency, f.urgency),
                          (c.category, f.category), (c.dispute_type, f.dispute_type), (c.breached, f.breached)):
        if value is not None:
            conditions.append(column == value)
    if f.region_prefix:
        conditions.extend(_in_region(c.region_code, f.region_prefix))
    if f.assignee_id:
        conditions.append(or_(c.mediator_id == f.assignee_id, c.lawyer_id == f.assignee_id))
    if f.opened_from is not None:
        conditions.append(c.opened_at >= _shanghai_midnight(f.opened_from))
    if f.opened_to is not None and f.opened_to < date.max:
        conditions.append(c.opened_at < _shanghai_midnight(f.opened_to + timedelta(days=1)))
    if f.caller_phone:
        conditions.append(c.caller_phone == f.caller_phone)
    if f.text and (digits := phone_query(f.text)) is not None:
        conditions.extend(_prefix_range(c.caller_phone_digits, digits))
    return conditions


def _text_search(f: CaseFilters) -> str | None:
    """The text to look for in the description or the name; None when there is none (or `text` is a
    phone number: `_case_conditions` searches the phones)."""
    return f.text if f.text and phone_query(f.text) is None else None


def _holds_text(record, text: str, *, sqlite: bool):
    """The search's own condition, whatever serves it: the text anywhere in the description or the
    caller's name, ASCII letters in either case (PostgreSQL: any letters, as its lower() folds them).

    On SQLite a plain LIKE: it ignores the case of ASCII letters, and only theirs, exactly as the
    `lower(x) LIKE lower(y)` SQLAlchemy writes for ILIKE does, without copying every text it checks
    (a walk of 15,000 cases: 10 ms instead of 14)."""
    pattern = like_pattern(text)
    if sqlite:
        return or_(record.description.like(pattern, escape=LIKE_ESCAPE),
                   record.caller_name.like(pattern, escape=LIKE_ESCAPE))
    return or_(record.description.ilike(pattern, escape=LIKE_ESCAPE),
               record.caller_name.ilike(pattern, escape=LIKE_ESCAPE))


# -- Cases ---------------------------------------------------------------------------------------


# PostgreSQL: a text search first reads this many cases of the listing (its order, its other
# filters), and checks the text in them: a common text fills the page there; otherwise the index.
TEXT_WALK = 2000
TEXT_FEW = 200  # PostgreSQL: up to this many cases holding a text, the index is asked first (_text_rows)
# SQLite: the most candidates the index may give for them to be looked up; more, and the walk.
TEXT_CANDIDATES = 2000


def list_cases(session: Session, *, scope: Scope, filters: CaseFilters, cursor: str | None = None,
               limit: int = 50) -> CasePage:
    """Newest first (opened_at, then case_id, both descending): keyset paging, stable while cases
    are added. Raises `InvalidCursor`.

    A text (`filters.text`, not a phone number) of two characters or more is found through the
    bigram index (`disputeflow.db.text_index`), answering exactly what `ILIKE '%text%'` on the
    description or the name answers: the index gives the cases holding every bigram of the text
    (a few for a name or a rare word, none for a text no case holds), and only those are checked,
    filtered and sorted. A common text is found by walking the listing, which fills its page soon:

    - SQLite: the index's candidates are counted first; more than `TEXT_CANDIDATES`, and the
      listing is walked (with the ILIKE) until the page is full;
    - PostgreSQL: when the index holds more than `TEXT_FEW` of them, the first `TEXT_WALK` cases
      of the listing (with every other filter and the cursor) are read and checked first; when
      they hold a full page, that is the page.

    A one-character text has no bigram: the listing is walked until the page is full (all of it
    when few cases hold the text)."""
    limit = max(1, min(limit, MAX_PAGE))
    conditions = _scope_conditions(scope, CaseRecord.region_code, CaseRecord.mediator_id) + _case_conditions(filters)
    if cursor:
        opened_at, case_id = decode_cursor(cursor)
        # opened_at <= x first: a range the (opened_at, case_id) index can seek to on its own.
        conditions.append(CaseRecord.opened_at <= opened_at)
        conditions.append(or_(CaseRecord.opened_at < opened_at,
                              and_(CaseRecord.opened_at == opened_at, CaseRecord.case_id < case_id)))
    newest_first = (CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())
    text = _text_search(filters)
    if text is None or not text_index.searchable(text):
        if text is not None:
            conditions.append(_holds_text(CaseRecord, text, sqlite=session.get_bind().dialect.name == "sqlite"))
        rows = list(session.exec(select(CaseRecord).where(*conditions).order_by(*newest_first).limit(limit + 1)))
    else:
        rows = _text_rows(session, conditions, text, limit + 1)
    more = len(rows) > limit
    items = rows[:limit]
    return CasePage(items=items, next_cursor=encode_cursor(items[-1]) if more else None)


def _text_rows(session: Session, conditions: list, text: str, wanted: int) -> list[CaseRecord]:
    """Up to `wanted` cases meeting `conditions` and holding `text`, newest first (list_cases' steps)."""
    newest_first = (CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())
    if session.get_bind().dialect.name == "sqlite":
        holds = _holds_text(CaseRecord, text, sqlite=True)
        # SQLite looks each candidate up by its key (its row number, then its row): 5-10 us a case,
        # more than the walk spends on a case of the listing. So the index is counted first (in
        # itself, under a millisecond): up to TEXT_CANDIDATES cases, they are the answer's only
        # candidates; more, and the text is common enough for the plain walk to find it sooner
        # (within ~2,500 cases for a text 2% of the cases hold; all of them only when the other
        # filters exclude the cases holding it, as before the index).
        many = session.exec(select(func.count()).select_from(
            text_index.sqlite_matches(text).limit(TEXT_CANDIDATES + 1).subquery())).one()
        if many > TEXT_CANDIDATES:
            return list(session.exec(select(CaseRecord).where(*conditions, holds).order_by(*newest_first).limit(wanted)))
        found = text_index.sqlite_candidates(text).cte("found").prefix_with("MATERIALIZED")
        return list(session.exec(
            select(CaseRecord).join(found, CaseRecord.case_id == found.c.case_id)
            .where(*conditions, holds).order_by(*newest_first).limit(wanted)))
    # PostgreSQL: a text few cases hold (up to TEXT_FEW of them, counted from the index: a bitmap of
    # them, then as many rows) goes straight to the index; any other, the first TEXT_WALK cases of
    # the listing first, then the index. (Either way the answer is the same; this is only the cost.)
    few = session.exec(select(func.count()).select_from(
        select(CaseRecord.case_id).where(text_index.pg_holds_bigrams(text)).limit(TEXT_FEW + 1).subquery())).one()
    if few <= TEXT_FEW:
        return _pg_candidates(session, conditions, text, wanted)
    # One statement, which stops as soon as the page is full: the walk's cases holding the text, and
    # its last case (the TEXT_WALK-th, present only when the listing goes on further) as a marker.
    walked = (select(CaseRecord, func.row_number().over(order_by=newest_first).label("n"))
              .where(*conditions).order_by(*newest_first).limit(TEXT_WALK).subquery("walked"))
    case = aliased(CaseRecord, walked)
    holds = _holds_text(case, text, sqlite=False)
    found = list(session.exec(select(case, holds.label("holds"), walked.c.n).where(or_(holds, walked.c.n == TEXT_WALK))
                              .order_by(case.opened_at.desc(), case.case_id.desc()).limit(wanted + 1)))
    rows = [row for row, held, _ in found if held][:wanted]
    if len(rows) == wanted or not any(n == TEXT_WALK for _, _, n in found):
        return rows  # a full page, or the walk read the whole listing
    return _pg_candidates(session, conditions, text, wanted)


def _pg_candidates(session: Session, conditions: list, text: str, wanted: int) -> list[CaseRecord]:
    # The whole rows, filtered, from a bitmap scan of the index, found first (a materialized CTE; joined
    # to `cases` again, the planner would rather read every case than look up a few thousand).
    found = (select(CaseRecord).where(text_index.pg_holds_bigrams(text), *conditions,
                                      _holds_text(CaseRecord, text, sqlite=False))
             .cte("found").prefix_with("MATERIALIZED"))
    case = aliased(CaseRecord, found)
    return list(session.exec(select(case).order_by(case.opened_at.desc(), case.case_id.desc()).limit(wanted)))


def open_cases_of_caller(session: Session, *, phone: str, region_prefix: str | None, exclude: str,
                         limit: int = 10) -> list[CaseRecord]:
    """Other open cases from the same phone number: the duplicates an intake operator should see."""
    conditions = [CaseRecord.caller_phone == phone, CaseRecord.stage != "closed", CaseRecord.case_id != exclude]
    if region_prefix:
        conditions.append(CaseRecord.region_code.startswith(region_prefix, autoescape=True))
    return list(session.exec(
        select(CaseRecord).where(*conditions).order_by(CaseRecord.opened_at.desc()).limit(limit)
    ))


# Built once: intake runs it on every registration. A region prefix is digits (REGION_PATTERN), so
# its LIKE pattern needs no escaping; none is '%'.
_OPEN_CASE_IDS_OF_CALLER = (
    select(CaseRecord.case_id)
    .where(CaseRecord.caller_phone == bindparam("phone"), CaseRecord.stage != "closed",
           CaseRecord.case_id != bindparam("exclude"), CaseRecord.region_code.like(bindparam("region")))
    .order_by(CaseRecord.opened_at.desc()).limit(bindparam("limit"))
)


def open_case_ids_of_caller(engine: Engine, *, phone: str, region_prefix: str | None, exclude: str,
                            limit: int = 10) -> list[str]:
    """The case numbers of `open_cases_of_caller`, read without loading the cases (intake's answer
    names them)."""
    region = region_prefix or ""
    if not (region.isascii() and region.isdigit()) and region:
        raise ValueError(f"a region prefix is digits of an administrative code, got {region_prefix!r}")
    with engine.connect() as connection:
        return list(connection.execute(_OPEN_CASE_IDS_OF_CALLER, {
            "phone": phone, "exclude": exclude, "region": f"{region}%", "limit": limit}).scalars())


def case_record(session: Session, case_id: str) -> CaseRecord | None:
    return session.get(CaseRecord, case_id)


def case_rows(session: Session, case_id: str) -> CaseRows | None:
    record = session.get(CaseRecord, case_id)
    if record is None:
        return None
    events = list(session.exec(select(CaseEventRecord).where(CaseEventRecord.case_id == case_id)
                               .order_by(CaseEventRecord.seq)))
    clocks = list(session.exec(select(ClockRecord).where(ClockRecord.case_id == case_id)
                               .order_by(ClockRecord.started_at, ClockRecord.clock_id)))
    tasks = list(session.exec(select(CaseTaskRecord).where(CaseTaskRecord.case_id == case_id,
                                                           CaseTaskRecord.status == "open")
                              .order_by(CaseTaskRecord.created_at, CaseTaskRecord.task_id)))
    mediator = session.get(Mediator, record.mediator_id) if record.mediator_id else None
    lawyer = session.get(Lawyer, record.lawyer_id) if record.lawyer_id else None
    return CaseRows(record=record, events=events, clocks=clocks, open_tasks=tasks,
                    mediator_name=mediator.name if mediator else None, lawyer_name=lawyer.name if lawyer else None)


# -- Inboxes -------------------------------------------------------------------------------------


@dataclass
class InboxPage:
    items: list[tuple[CaseTaskRecord, CaseRecord]]
    total: int


def open_tasks(session: Session, *, assignee_id: str | None = None, role: str | None = None,
               region_prefix: str | None = None, limit: int = 50, offset: int = 0) -> InboxPage:
    """Open tasks, soonest due first (no due time last), each with its case.

    `assignee_id`: tasks assigned to that person; otherwise `role` (and `region_prefix`): tasks
    waiting for anyone in that role there.
    """
    t = CaseTaskRecord
    conditions = [t.status == literal_column("'open'")]  # a literal: the partial indexes' own condition
    if assignee_id is not None:
        conditions.append(t.assignee_id == assignee_id)
    if role is not None:
        conditions.append(t.assignee_role == role)
    if region_prefix:
        # A county: the inbox index (role, region, due) gives due order; a city or a province: a
        # range, not LIKE, that the same index seeks to.
        conditions.extend(_in_region(t.region_code, region_prefix, as_range=True))
    joined = select(t, CaseRecord).join(CaseRecord, CaseRecord.case_id == t.case_id).where(*conditions)
    # Counted on the tasks alone (the projection writes a task with its case, in one transaction):
    # the index answers it without visiting a case row.
    total = session.exec(select(func.count()).select_from(t).where(*conditions)).one()
    size = max(1, min(limit, MAX_PAGE))
    if session.get_bind().dialect.name != "sqlite":  # PostgreSQL's own order (ASC NULLS LAST): the index's
        rows = session.exec(joined.order_by(t.due_at.asc().nulls_last(), t.task_id).limit(size).offset(offset))
        return InboxPage(items=[(task, case) for task, case in rows], total=total)
    # NULLs sort first in SQLite. Ordering by `due_at IS NULL` first would sort every matching task
    # (thousands in a busy county's operator inbox) for each page; instead the tasks with a due time,
    # in the index's own order, then those without, after them.
    items = list(session.exec(joined.where(t.due_at.is_not(None)).order_by(t.due_at, t.task_id).limit(size)
                              .offset(offset)))
    if len(items) < size:
        dated = (offset + len(items) if items else
                 session.exec(select(func.count()).select_from(t).where(*conditions, t.due_at.is_not(None))).one())
        items += session.exec(joined.where(t.due_at.is_(None)).order_by(t.task_id).limit(size - len(items))
                              .offset(max(0, offset - dated)))
    return InboxPage(items=[(task, case) for task, case in items], total=total)
