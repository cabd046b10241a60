"""Reference data: mediators and lawyers, loaded from a file, and choosing who takes a case."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import func, update
from sqlmodel import Session, select

from disputeflow.db.models import CaseRecord, Lawyer, Mediator

MEDIATION_STAGES = ("mediation", "agreement")
# A case waiting in legal_aid_assignment counts once a lawyer is booked on it (see `_book`).
REPRESENTATION_STAGES = ("legal_aid_assignment", "legal_aid_representation")


def seed_reference(session: Session, path: Path) -> tuple[int, int]:
    """Insert or update the mediators and lawyers listed in `path` (JSON). Idempotent."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for row in data.get("mediators", []):
        session.merge(Mediator(**row))
    for row in data.get("lawyers", []):
        session.merge(Lawyer(**row))
    return len(data.get("mediators", [])), len(data.get("lawyers", []))


def _open_load(session: Session, column, stages: tuple[str, ...], *, exclude_case: str | None = None) -> Counter:
    """Open cases per person; `exclude_case` (the case a choice is for) does not count its previous holder."""
    query = select(column, func.count()).where(column.is_not(None), CaseRecord.stage.in_(stages))
    if exclude_case is not None:
        query = query.where(CaseRecord.case_id != exclude_case)
    rows = session.exec(query.group_by(column))
    return Counter({person_id: count for person_id, count in rows})


def choose_mediator(session: Session, *, region_code: str, dispute_type: str, exclude: list[str],
                    for_case: str | None = None) -> Mediator | None:
    """An active mediator of the case's region with that expertise, the least open load first.

    With `for_case`, the choice is booked on that case's row, so that the next choice counts it.
    Run inside `write_session`: the region's mediators are locked (PostgreSQL) or the database is
    (SQLite), so two choices never read the same load.
    """
    candidates = [
        m for m in session.exec(select(Mediator).where(Mediator.region_code == region_code, Mediator.active)
                                .with_for_update())
        if dispute_type in m.expertise and m.id not in exclude
    ]
    if not candidates:
        return None
    load = _open_load(session, CaseRecord.mediator_id, MEDIATION_STAGES, exclude_case=for_case)
    chosen = min(candidates, key=lambda m: (load[m.id], m.id))
    _book(session, for_case, mediator_id=chosen.id)
    return chosen


def choose_lawyer(session: Session, *, region_code: str, dispute_type: str, exclude: list[str],
                  for_case: str | None = None) -> Lawyer | None:
    """An active lawyer of the region, specialists in the dispute type first, then the least open
    load; booked like `choose_mediator`."""
    candidates = [
        lw for lw in session.exec(select(Lawyer).where(Lawyer.region_code == region_code, Lawyer.active)
                                  .with_for_update())
        if lw.id not in exclude
    ]
    if not candidates:
        return None
    load = _open_load(session, CaseRecord.lawyer_id, REPRESENTATION_STAGES, exclude_case=for_case)
    chosen = min(candidates, key=lambda lw: (dispute_type not in lw.specialties, load[lw.id], lw.id))
    _book(session, for_case, lawyer_id=chosen.id)
    return chosen


def _book(session: Session, case_id: str | None, **person: str) -> None:
    """Write the chosen person on the case's row ahead of the case's own projection, which will
    write the same (or, if the case moved on meanwhile, what it has now)."""
    if case_id is not None:
        session.execute(update(CaseRecord).where(CaseRecord.case_id == case_id).values(**person))


def _same_city(a: str, b: str) -> bool:
    return a[:4] == b[:4]


def find_mediator(session: Session, *, mediator_id: str, region_code: str) -> Mediator | None:
    """A mediator a supervisor names: active, and of the case's city (a county without one of its
    own borrows from its neighbours; automatic choice stays within the county)."""
    m = session.get(Mediator, mediator_id)
    return m if m is not None and m.active and _same_city(m.region_code, region_code) else None


def find_lawyer(session: Session, *, lawyer_id: str, region_code: str) -> Lawyer | None:
    """A lawyer a legal-aid officer names: active, and of the case's city."""
    lw = session.get(Lawyer, lawyer_id)
    return lw if lw is not None and lw.active and _same_city(lw.region_code, region_code) else None
