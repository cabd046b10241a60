"""Supervisor views over the read model: breached clocks, clocks at risk, compliance figures.

Every query of the SLA views lives here; the API's routes call these functions and shape nothing
themselves. All of them read `ClockRecord` (joined with `CaseRecord` for the case's urgency and
category) and behave alike on SQLite and PostgreSQL.

Definitions (the same in every view):

- a clock is *open* while it is running or paused, and *ended* once met or cancelled;
- a clock is *breached* once its breach has fired (`ClockRecord.breached`); an extension granted
  afterwards moves its due time but does not erase the breach;
- a clock is *at risk* while it is open, not breached, and either one of its warnings has fired or
  it falls due within a window (24 hours by default).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Float, and_, case, cast, func, null, text
from sqlmodel import Session, select

from disputeflow.db import compliance as counters
from disputeflow.db.models import OPEN_CLOCK, CaseRecord, ClockRecord, ComplianceCount
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.enums import Stage

MAX_LIMIT = 1000
DEFAULT_AT_RISK_WINDOW = timedelta(hours=24)
OPEN_STATUSES = ("running", "paused")


class ClockRow(BaseModel):
    """One clock as a supervisor sees it, with its case's urgency and category."""

    clock_id: str
    case_id: str
    name: str
    title: str
    stage: str
    region_code: str
    assignee_id: str | None
    started_at: datetime
    due_at: datetime
    status: str  # running | paused | met | cancelled
    breached: bool
    breached_at: datetime | None
    next_warning_at: datetime | None
    warnings_fired: int
    paused_at: datetime | None
    pause_reason: str | None
    met_at: datetime | None
    urgency: str | None  # None only if the case row is missing (never written apart from its clocks)
    category: str | None


_ROW_COLUMNS = (
    ClockRecord.clock_id, ClockRecord.case_id, ClockRecord.name, ClockRecord.title, ClockRecord.stage,
    ClockRecord.region_code, ClockRecord.assignee_id, ClockRecord.started_at, ClockRecord.due_at,
    ClockRecord.status, ClockRecord.breached, ClockRecord.breached_at, ClockRecord.next_warning_at,
    ClockRecord.warnings_fired, ClockRecord.paused_at, ClockRecord.pause_reason, ClockRecord.met_at,
    CaseRecord.urgency, CaseRecord.category,
)
_ROW_FIELDS = tuple(ClockRow.model_fields)
assert len(_ROW_COLUMNS) == len(_ROW_FIELDS)


# -- Arguments ---------------------------------------------------------------------------------


def _check_region_prefix(prefix: str | None) -> str | None:
    """2 (province), 4 (city) or 6 (county) digits. Digits only, so it is safe inside LIKE."""
    if prefix is None:
        return None
    if not (prefix.isascii() and prefix.isdigit() and len(prefix) in (2, 4, 6)):
        raise ValueError(f"a region prefix is 2, 4 or 6 digits of an administrative code, got {prefix!r}")
    return prefix


def _check_stage(stage: str | None) -> str | None:
    if stage is None:
        return None
    try:
        return Stage(stage).value
    except ValueError:
        known = ", ".join(s.value for s in Stage)
        raise ValueError(f"unknown stage {stage!r}; one of: {known}") from None


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be 0 or more, got {offset}")


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")


def _filters(region_prefix: str | None, stage: str | None, assignee_id: str | None, clock: str | None) -> list:
    conditions = []
    if (prefix := _check_region_prefix(region_prefix)) is not None:
        conditions.append(ClockRecord.region_code.startswith(prefix, autoescape=True))
    if (stage_value := _check_stage(stage)) is not None:
        conditions.append(ClockRecord.stage == stage_value)
    if assignee_id is not None:
        conditions.append(ClockRecord.assignee_id == assignee_id)
    if clock is not None:
        conditions.append(ClockRecord.name == clock)
    return conditions


def _fixed(session: Session, condition: str) -> Any:
    """A fixed filter, written with literals exactly as the partial index it should use states it
    (models.py: SQLite only matches a partial index to a query that repeats its terms verbatim)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    true, false = ("1", "0") if sqlite else ("true", "false")
    return text(condition.format(open="clocks." + OPEN_CLOCK, breached="clocks.breached = " + true,
                                 unbreached="clocks.breached = " + false))


def _clock_rows(session: Session, conditions: list, limit: int, offset: int) -> list[ClockRow]:
    statement = (
        select(*_ROW_COLUMNS)
        .select_from(ClockRecord)
        .outerjoin(CaseRecord, CaseRecord.case_id == ClockRecord.case_id)
        .where(*conditions)
        .order_by(ClockRecord.due_at, ClockRecord.clock_id)  # clock_id: a stable order across pages
        .limit(limit)
        .offset(offset)
    )
    # Core rather than the ORM (the columns need no identity map), and rows trusted as read: the
    # columns' own types convert them, so validating each again only cost the board time.
    return [ClockRow.model_construct(**dict(zip(_ROW_FIELDS, row, strict=True)))
            for row in session.connection().execute(statement)]


def _clock_ids(session: Session, conditions: list, limit: int) -> list[str]:
    statement = (select(ClockRecord.clock_id).where(*conditions).order_by(ClockRecord.due_at, ClockRecord.clock_id)
                 .limit(limit))
    return list(session.connection().execute(statement).scalars())


# -- Views -------------------------------------------------------------------------------------


def breached_clocks(
    session: Session,
    *,
    region_prefix: str | None = None,
    stage: str | None = None,
    assignee_id: str | None = None,
    clock: str | None = None,
    include_ended: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[ClockRow]:
    """Clocks whose breach has fired, the longest overdue (earliest due) first.

    Open clocks only unless `include_ended`. A clock extended after its breach stays listed (its
    `breached_at` is kept, its `due_at` is the extended one). Raises ValueError on a malformed
    region prefix, an unknown stage, or a limit outside 1..MAX_LIMIT.
    """
    _check_page(limit, offset)
    conditions = [_fixed(session, "{breached}"), *_filters(region_prefix, stage, assignee_id, clock)]
    if not include_ended:
        conditions.append(_fixed(session, "{open}"))
    return _clock_rows(session, conditions, limit, offset)


def at_risk_clocks(
    session: Session,
    *,
    now: datetime,
    within: timedelta | None = None,
    region_prefix: str | None = None,
    stage: str | None = None,
    assignee_id: str | None = None,
    clock: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ClockRow]:
    """Open clocks not yet breached that have fired a warning or fall due by `now + within`
    (default 24 hours), soonest due first. Paused clocks are included (their rows say so); a
    clock past its due time whose breach has not fired yet counts as at risk, not breached.
    """
    _require_aware(now, "now")
    _check_page(limit, offset)
    window = DEFAULT_AT_RISK_WINDOW if within is None else within
    if window < timedelta(0):
        raise ValueError(f"within must not be negative, got {window}")
    # Two index range scans instead of one OR that no index serves: due within the window
    # (ix_clocks_open_unbreached_due), and warned but due later (ix_clocks_open_warned_due). Every
    # clock of the first falls due before every clock of the second, so in due order the second
    # follows the first: it is read only for what the first leaves of the page. Together: exactly
    # the clocks that are warned or due within the window.
    filters = _filters(region_prefix, stage, assignee_id, clock)
    horizon = now + window
    due_soon = _clock_rows(session, [_fixed(session, "{open} AND {unbreached}"), ClockRecord.due_at <= horizon,
                                     *filters], limit, offset)
    if len(due_soon) == limit:
        return due_soon
    skipped = 0  # how many due-soon clocks the offset passed over
    if not due_soon and offset:
        skipped = len(_clock_ids(session, [_fixed(session, "{open} AND {unbreached}"), ClockRecord.due_at <= horizon,
                                           *filters], offset))
    warned = _clock_rows(session, [_fixed(session, "{open} AND {unbreached} AND clocks.warnings_fired > 0"),
                                   ClockRecord.due_at > horizon, *filters], limit - len(due_soon),
                         max(0, offset - skipped) if not due_soon else 0)
    return due_soon + warned


# -- Compliance --------------------------------------------------------------------------------


Period = Literal["day", "week", "month"]


class ComplianceRow(BaseModel):
    """Clocks of one name, region and period (of their start, Asia/Shanghai), by outcome.

    The six outcome counts partition `started`. `compliance_rate` rates the clocks whose outcome
    is known against the deadline: met_on_time / (met_on_time + met_late + breached_open +
    cancelled_after_breach). Open clocks still on time and clocks cancelled before their due time
    are not rated; a breach stays a breach when the case is withdrawn afterwards, and so does a
    deadline passed before the withdrawal whose breach had not fired yet. None when nothing can be
    rated.
    """

    clock: str
    region_code: str  # the region prefix at the chosen level (2, 4 or 6 digits)
    period: str  # "2026-11-05" (day), "2026-W48" (ISO week), "2026-11" (month)
    started: int = 0
    met_on_time: int = 0
    met_late: int = 0  # met after breaching (extended or not), or after its due time
    breached_open: int = 0  # still open, breached
    open_on_time: int = 0  # still open, not breached
    cancelled: int = 0  # ended without being met (the case was withdrawn) before its due time
    cancelled_after_breach: int = 0  # ended without being met, after its due time (breach fired or not)
    compliance_rate: float | None = None

    def _finish(self) -> ComplianceRow:
        rated = self.met_on_time + self.met_late + self.breached_open + self.cancelled_after_breach
        self.compliance_rate = self.met_on_time / rated if rated else None
        return self


def period_of(moment: datetime, period: Period) -> str:
    """The Asia/Shanghai day, ISO week or month `moment` falls in."""
    local = moment.astimezone(SHANGHAI).date()
    if period == "day":
        return local.isoformat()
    if period == "week":
        iso = local.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if period == "month":
        return f"{local.year:04d}-{local.month:02d}"
    raise ValueError(f"period must be day, week or month, got {period!r}")


_outcome = counters.outcome


def _compliance_facts(
    session: Session, start: date, end: date, region_prefix: str | None
) -> Iterator[tuple[str, str, datetime, str, bool, datetime, datetime | None]]:
    """(name, region, started_at, status, breached, due_at, ended_at) of clocks started in the
    Shanghai dates [start, end], streamed in batches rather than loaded at once."""
    first = datetime.combine(start, time(0), tzinfo=SHANGHAI)
    after_last = datetime.combine(end + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    conditions = [ClockRecord.started_at >= first, ClockRecord.started_at < after_last]
    if (prefix := _check_region_prefix(region_prefix)) is not None:
        conditions.append(ClockRecord.region_code.startswith(prefix, autoescape=True))
    statement = (
        select(ClockRecord.name, ClockRecord.region_code, ClockRecord.started_at, ClockRecord.status,
               ClockRecord.breached, ClockRecord.due_at,
               func.coalesce(ClockRecord.ended_at, ClockRecord.met_at))  # met before migration 0002: met_at
        .where(and_(*conditions))
        .execution_options(yield_per=1000)
    )
    yield from session.exec(statement)


# The fields of a compliance row, in ComplianceRow's order: what `compliance_table` returns per row.
COMPLIANCE_FIELDS = ("clock", "region_code", "period", "started", "met_on_time", "met_late", "breached_open",
                     "open_on_time", "cancelled", "cancelled_after_breach", "compliance_rate")
ComplianceTuple = tuple[str, str, str, int, int, int, int, int, int, int, float | None]


def compliance_table(
    session: Session,
    *,
    start: date,
    end: date,
    period: Period = "month",
    region_prefix: str | None = None,
    group_by_region_level: Literal[2, 4, 6] = 6,
) -> list[ComplianceTuple]:
    """The rows of `compliance` as plain tuples (fields in `COMPLIANCE_FIELDS` order), in the same
    order: for answers of thousands of rows (a province's year by county), where a model per row
    and an SQL GROUP BY cost more than the rest of the answer together.

    Read from the counters the projection keeps (`disputeflow.db.compliance`), not from the clocks:
    the weeks or months wholly inside the range from their own counters, the days of a partial
    week or month at either end from the day counters, each at the region level asked for. The
    cost grows with the number of rows answered, not of clocks.
    """
    if end < start:
        raise ValueError(f"end ({end.isoformat()}) is before start ({start.isoformat()})")
    if period not in ("day", "week", "month"):
        raise ValueError(f"period must be day, week or month, got {period!r}")
    if group_by_region_level not in (2, 4, 6):
        raise ValueError(f"group_by_region_level must be 2, 4 or 6, got {group_by_region_level!r}")
    prefix = _check_region_prefix(region_prefix)
    c = ComplianceCount.__table__.c
    scope = [c.region_code.startswith(prefix, autoescape=True)] if prefix else []
    # (kind, label column, first day from, first day to) of each part. Their rows never share a
    # (clock, region, label): the whole buckets, the partial bucket at the start and the one at
    # the end are different buckets (one part only when start and end share a bucket).
    parts: list[tuple[str, Any, date, date]] = []
    _, head_first, head_last = counters.bucket(period, start)
    whole_from = start if head_first == start else head_last + timedelta(days=1)
    _, tail_first, tail_last = counters.bucket(period, end)
    whole_to = tail_first if tail_last == end else tail_first - timedelta(days=1)  # first day of the last one
    fold = c.week if period == "week" else c.month  # a day row's week or month
    if period == "day":
        parts.append(("day", c.period, start, end))
    elif whole_from <= whole_to:
        parts.append((period, c.period, whole_from, whole_to))
        if start < whole_from:
            parts.append(("day", fold, start, whole_from - timedelta(days=1)))
        last_whole_end = counters.bucket(period, whole_to)[2]
        if last_whole_end < end:
            parts.append(("day", fold, last_whole_end + timedelta(days=1), end))
    else:  # no whole bucket: the days, folded into their week or month
        parts.append(("day", fold, start, end))
    assert counters.COUNTS == ("started", "met_on_time", "met_late", "breached_open", "open_on_time", "cancelled",
                               "cancelled_after_breach")
    # The counters hold each region level's own rows (`counters.LEVELS`): nothing to add up. A level
    # above the scope's own (a city's supervisor by province) is the scope's one region, named at
    # that level ("3702" shown as "37"): the clocks of the scope, as the code's first digits say.
    level = max(group_by_region_level, len(prefix or ""))
    region = c.region_code if level == group_by_region_level else func.substr(c.region_code, 1,
                                                                              group_by_region_level)
    connection = session.connection()
    rows: list[ComplianceTuple] = []
    for kind, label, first, last in parts:
        where = (c.kind == kind, c.first_day >= first, c.first_day <= last, func.length(c.region_code) == level,
                 *scope)
        if kind == period:
            # One row per (clock, region, bucket) already: no GROUP BY (SQLite would sort them all).
            counts = [c[name] for name in counters.COUNTS]
            statement = select(c.clock, region, label, *counts, _rate_sql(counts)).where(*where, c.started > 0)
        else:  # days folded into their week or month
            counts = [func.sum(c[name]) for name in counters.COUNTS]
            statement = (select(c.clock, region, label, *counts, _rate_sql(counts))
                         .where(*where).group_by(c.clock, region, label).having(counts[0] > 0))
        # Finished by the database (rate included), fetched as the driver's plain tuples: building
        # SQLAlchemy rows, then tuples from them (its rows compare slowly in the sort below), or a
        # Python loop over thousands of rows, costs more than the query. No column here has a
        # result type to convert: text, integers and a float, as both drivers return them.
        result = connection.execute(statement)
        try:
            rows.extend(result.cursor.fetchall())
        finally:
            result.close()
    rows.sort()  # by clock, region, label (unique): code-point order, whatever the collation
    return rows


def _rate_sql(counts: list[Any]) -> Any:
    """`ComplianceRow.compliance_rate` in SQL: met on time over rated, NULL when nothing is rated.
    Both databases divide IEEE doubles, correctly rounded, as Python's int / int does: the same
    float (tests/test_scale.py compares the answers with a recount in Python)."""
    _, on_time, late, breached_open, _, _, cancelled_late = counts
    rated = on_time + late + breached_open + cancelled_late
    return case((rated > 0, cast(on_time, Float) / rated), else_=null())


def compliance(
    session: Session,
    *,
    start: date,
    end: date,
    period: Period = "month",
    region_prefix: str | None = None,
    group_by_region_level: Literal[2, 4, 6] = 6,
) -> list[ComplianceRow]:
    """Compliance per clock, per region (cut to `group_by_region_level` digits) and per period of
    the clock's start, for clocks started on Shanghai dates start..end (both included).

    Rows are sorted by clock, region, period; combinations with no clock started are left out.
    The rows of `compliance_table`, as models.
    """
    return [ComplianceRow(**dict(zip(COMPLIANCE_FIELDS, row, strict=True)))
            for row in compliance_table(session, start=start, end=end, period=period, region_prefix=region_prefix,
                                        group_by_region_level=group_by_region_level)]


def compliance_from_clocks(
    session: Session,
    *,
    start: date,
    end: date,
    period: Period = "month",
    region_prefix: str | None = None,
    group_by_region_level: Literal[2, 4, 6] = 6,
) -> list[ComplianceRow]:
    """The same figures recomputed from every clock: a check of the counters (tests, repairs)."""
    groups: dict[tuple[str, str, str], ComplianceRow] = {}
    for name, region, started_at, status, breached, due_at, ended_at in _compliance_facts(
        session, start, end, region_prefix
    ):
        key = (name, region[:group_by_region_level], period_of(started_at, period))
        row = groups.get(key)
        if row is None:
            row = groups[key] = ComplianceRow(clock=key[0], region_code=key[1], period=key[2])
        row.started += 1
        outcome = _outcome(status, bool(breached), due_at, ended_at)
        setattr(row, outcome, getattr(row, outcome) + 1)
    return [groups[key]._finish() for key in sorted(groups)]


# -- CSV ---------------------------------------------------------------------------------------


CSV_COLUMNS = (
    "clock", "region_code", "period", "started", "met_on_time", "met_late", "breached_open",
    "open_on_time", "cancelled", "compliance_rate",
    "cancelled_after_breach",  # added after the others: existing columns keep their places
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: object) -> str:
    """Text a spreadsheet will not run as a formula: a leading = + - @ (or tab, CR) gets an apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


def compliance_csv(rows: Iterable[ComplianceRow | ComplianceTuple]) -> str:
    """The rows (models, or tuples from `compliance_table`) as CSV text (RFC 4180: comma-separated,
    CRLF line ends, quoted where needed).

    A header row, then one line per row; the rate has 4 decimal places, empty when None. Encode
    the result as UTF-8 to send it.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    safe: dict[object, str] = {}  # a report repeats a few dozen texts thousands of times

    def cell(value: object) -> str:
        text = safe.get(value)
        if text is None:
            text = safe[value] = _safe_cell(value)
        return text

    def lines() -> Iterator[list[object]]:
        for row in rows:
            if isinstance(row, ComplianceRow):
                row = tuple(getattr(row, name) for name in COMPLIANCE_FIELDS)
            clock, region_code, period, started, on_time, late, breached_open, open_on_time, cancelled, \
                cancelled_late, rate = row
            yield [cell(clock), cell(region_code), cell(period), started, on_time, late, breached_open, open_on_time,
                   cancelled, _rate(rate), cancelled_late]

    writer.writerows(lines())
    return out.getvalue()
