"""Arrivals from the read model: the last N weeks' cases of a region, as weekly rates or exactly."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta

from sqlmodel import Session, select

from disputeflow.db.models import CaseRecord
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.forecast.spec import Arrival


def _window(session: Session, region_code: str, first: date, last: date) -> list[CaseRecord]:
    """Cases of the region opened on Shanghai days first..last (both included)."""
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    query = (select(CaseRecord).where(CaseRecord.region_code == region_code)
             .where(CaseRecord.opened_at >= start).where(CaseRecord.opened_at < end))
    return list(session.exec(query))


def weekly_rates(session: Session, region_code: str, *, weeks: int, until: date) -> list[Arrival]:
    """Cases a week by category, dispute type and urgency over the `weeks` weeks ending on `until`."""
    rows = _window(session, region_code, until - timedelta(weeks=weeks) + timedelta(days=1), until)
    counts = Counter((r.category, r.dispute_type, r.urgency) for r in rows)
    return [Arrival(category=c, dispute_type=d, urgency=u, per_week=n / weeks)
            for (c, d, u), n in sorted(counts.items())]


def exact_arrivals(session: Session, region_code: str, *, start: date, weeks: int) -> list[tuple[str, str, str, str]]:
    """The period's cases as they arrived: (registered instant, category, dispute type, urgency)."""
    rows = _window(session, region_code, start, start + timedelta(weeks=weeks) - timedelta(days=1))
    return [(r.opened_at.isoformat(), r.category, r.dispute_type, r.urgency) for r in sorted(rows, key=lambda r: r.opened_at)]
