"""Reference data: mediators and lawyers, loaded from a file, and choosing who takes a case."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from disputeflow.db.models import CaseRecord, Lawyer, Mediator

MEDIATION_STAGES = ("mediation", "agreement")
REPRESENTATION_STAGES = ("legal_aid_representation",)


def seed_reference(session: Session, path: Path) -> tuple[int, int]:
    """Insert or update the mediators and lawyers listed in `path` (JSON). Idempotent."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for row in data.get("mediators", []):
        session.merge(Mediator(**row))
    for row in data.get("lawyers", []):
        session.merge(Lawyer(**row))
    return len(data.get("mediators", [])), len(data.get("lawyers", []))


def _open_load(session: Session, column, stages: tuple[str, ...]) -> Counter:
    rows = session.exec(
        select(column, func.count()).where(column.is_not(None), CaseRecord.stage.in_(stages)).group_by(column)
    )
    return Counter({person_id: count for person_id, count in rows})


def choose_mediator(session: Session, *, region_code: str, dispute_type: str, exclude: list[str]) -> Mediator | None:
    """An active mediator of the case's region with that expertise, the least open load first."""
    candidates = [
        m for m in session.exec(select(Mediator).where(Mediator.region_code == region_code, Mediator.active))
        if dispute_type in m.expertise and m.id not in exclude
    ]
    if not candidates:
        return None
    load = _open_load(session, CaseRecord.mediator_id, MEDIATION_STAGES)
    return min(candidates, key=lambda m: (load[m.id], m.id))


def choose_lawyer(session: Session, *, region_code: str, dispute_type: str, exclude: list[str]) -> Lawyer | None:
    """An active lawyer of the region, specialists in the dispute type first, then the least open load."""
    candidates = [
        lw for lw in session.exec(select(Lawyer).where(Lawyer.region_code == region_code, Lawyer.active))
        if lw.id not in exclude
    ]
    if not candidates:
        return None
    load = _open_load(session, CaseRecord.lawyer_id, REPRESENTATION_STAGES)
    return min(candidates, key=lambda lw: (dispute_type not in lw.specialties, load[lw.id], lw.id))


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
