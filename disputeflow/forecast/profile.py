"""From the read model: the last N weeks' arrivals of a region (as weekly rates, or exactly) and
its outcome mix (what share of mediation sessions agree, of disputes go to mediation, of legal-aid
applications are approved...)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel
from sqlmodel import Session, select

from disputeflow.db.models import CaseEventRecord, CaseRecord
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.forecast.spec import Arrival, Outcomes


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


# -- The outcome mix --------------------------------------------------------------------------------

MIN_SEEN = 5  # a share is taken from the read model once it rests on at least this many outcomes

# Each share of `Outcomes` the events can show: (event type, its stage before, what it counts as).
# `from_stage` is the stage the case left (a stage entry records it); None: any.
_SHARES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # share: (events that count for it, events that count against it), each "type" or "type@from_stage"
    "dispute_to_mediation": (("sent_to_mediation@triage",), ("referred@triage",)),
    "consultation_answered": (("consultation_answered",), ("referred@triage",)),
    "referral_accepted": (("referral_accepted",), ("referral_bounced",)),
    "confirmation_applied": (("judicial_confirmation_recorded:applied",), ("judicial_confirmation_recorded:not_applied",)),
    "performed": (("agreement_performed",), ("escalated@agreement",)),
    "legal_aid_approved": (("legal_aid_approved",), ("legal_aid_refused",)),
    "refusal_overturned": (("refusal_overturned",), ("refusal_upheld",)),
    "dissatisfied": (("return_visit_recorded:dissatisfied",), ("return_visit_recorded:satisfied",)),
}
# Which category's cases a share is about (the same event means different things for each).
_CATEGORY = {"dispute_to_mediation": "dispute", "consultation_answered": "consultation"}
_MIXES: dict[str, dict[str, str]] = {  # mix -> {its share: the event (key) that counts for it}
    "sessions": {"agreement": "agreement_reached", "partial": "mediation_session_recorded:partial",
                 "no_agreement": "mediation_session_recorded:no_agreement",
                 "party_absent": "mediation_session_recorded:party_absent"},
    "escalation": {"reassign_mediator": "sent_to_mediation@escalated", "refer_out": "referred_out",
                   "send_to_legal_aid": "legal_aid_opened@escalated"},
}


class OutcomeEvidence(BaseModel):
    """How an outcome share was set: from how many outcomes in the read model, or left as given."""

    share: str
    value: float
    seen: int  # outcomes of this kind in the window
    taken: bool  # from the read model (seen >= MIN_SEEN), else the given value kept


def _keys(event: CaseEventRecord, category: str) -> list[str]:
    """The keys of `_SHARES` and `_MIXES` an event counts under."""
    data = event.data or {}
    keys = [event.type]
    if data.get("from_stage"):
        keys.append(f"{event.type}@{data['from_stage']}")
    if event.type == "mediation_session_recorded" and data.get("outcome"):
        keys.append(f"{event.type}:{data['outcome']}")
    elif event.type == "judicial_confirmation_recorded":
        keys.append(f"{event.type}:{'applied' if data.get('applied') else 'not_applied'}")
    elif event.type == "return_visit_recorded":
        keys.append(f"{event.type}:{'dissatisfied' if data.get('dissatisfied') else 'satisfied'}")
    return [f"{category}/{k}" for k in keys] + keys


def outcome_mix(session: Session, region_code: str, *, weeks: int, until: date,
                given: Outcomes | None = None) -> tuple[Outcomes, list[OutcomeEvidence]]:
    """The outcome mix the region's cases show over the `weeks` weeks ending on `until`: each share
    from the outcomes recorded in that window (mediation sessions, triage decisions, referrals,
    legal-aid decisions, return visits...). A share resting on fewer than `MIN_SEEN` outcomes keeps
    its value in `given` (default: the spec's defaults); the delays are always `given`'s."""
    given = given or Outcomes()
    first = until - timedelta(weeks=weeks) + timedelta(days=1)
    start = datetime.combine(first, time(0), tzinfo=SHANGHAI)
    end = datetime.combine(until + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    types = {k.split("@")[0].split(":")[0] for pro, con in _SHARES.values() for k in pro + con}
    types |= {k.split("@")[0].split(":")[0] for mix in _MIXES.values() for k in mix.values()}
    query = (select(CaseEventRecord, CaseRecord.category).join(CaseRecord, CaseRecord.case_id == CaseEventRecord.case_id)
             .where(CaseRecord.region_code == region_code).where(CaseEventRecord.at >= start)
             .where(CaseEventRecord.at < end).where(CaseEventRecord.type.in_(sorted(types))))
    counts: Counter[str] = Counter()
    for event, category in session.exec(query):
        counts.update(_keys(event, category))
    values = given.model_dump()
    evidence: list[OutcomeEvidence] = []
    for share, (pro, con) in _SHARES.items():
        prefix = f"{_CATEGORY[share]}/" if share in _CATEGORY else ""
        yes, no = sum(counts[prefix + k] for k in pro), sum(counts[prefix + k] for k in con)
        taken = yes + no >= MIN_SEEN
        if taken:
            values[share] = yes / (yes + no)
        evidence.append(OutcomeEvidence(share=share, value=values[share], seen=yes + no, taken=taken))
    for mix, parts in _MIXES.items():
        seen = {part: counts[key] for part, key in parts.items()}
        total = sum(seen.values())
        taken = total >= MIN_SEEN
        if taken:
            values[mix] = {part: n / total for part, n in seen.items()}
        for part in parts:
            evidence.append(OutcomeEvidence(share=f"{mix}.{part}", value=values[mix][part], seen=seen[part], taken=taken))
    return Outcomes.model_validate(values), evidence
