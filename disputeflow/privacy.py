"""Who sees a caller's full name and phone, and their identity card number: one decision, one mask.

The people *working* a case see the caller's name and phone in full; everyone else who may see
the case at all (scope is decided elsewhere, `api.auth.in_scope`) sees them masked: the JSON keeps
its shape, only the values change (`张*`, `138****8000`). The identity card number is shown to the
legal-aid officers of the case's region while the case is in a legal-aid stage, and to no one else.

| Role              | Full name and phone when                                                     |
|-------------------|------------------------------------------------------------------------------|
| operator          | the case is in their region and in stage triage, referred, legal_aid_review,  |
|                   | legal_aid_refused or follow_up (registration, referral, materials, a review   |
|                   | request for the caller, the return visit)                                    |
| mediator          | the case is assigned to them and in stage mediation, agreement or escalated    |
| legal_aid_officer | the case is in their region and in a legal-aid stage (phase legal_aid)        |
| supervisor        | the case is in their region (any stage: they escalate, reassign, review        |
|                   | complaints and answer for the region)                                        |
| auditor           | never: auditors check the process, not the people                            |

A closed case is therefore masked for everyone but its region's supervisors. Decided from the
actor and three facts of the case (stage, region, mediator), which both the live view and the read
model hold, so a case reads the same from either source.
"""

from __future__ import annotations

from dataclasses import dataclass

from disputeflow.domain.actions import Actor
from disputeflow.domain.enums import PHASE_OF_STAGE, Phase, Role, Stage

OPERATOR_STAGES = frozenset({Stage.triage, Stage.referred, Stage.legal_aid_review, Stage.legal_aid_refused,
                             Stage.follow_up})
MEDIATOR_STAGES = frozenset({Stage.mediation, Stage.agreement, Stage.escalated})


@dataclass(frozen=True)
class CaseFacts:
    """What the decision needs to know of a case."""

    stage: Stage
    region_code: str
    mediator_id: str | None


def _in_region(actor: Actor, facts: CaseFacts) -> bool:
    return facts.region_code.startswith(actor.region_code or "\0")


def sees_caller(actor: Actor | None, facts: CaseFacts) -> bool:
    """Whether `actor` works this case and so sees the caller's name and phone in full (the table above).
    No actor (a service call without one): masked."""
    if actor is None:
        return False
    stage = Stage(facts.stage)
    match actor.role:
        case Role.operator:
            return _in_region(actor, facts) and stage in OPERATOR_STAGES
        case Role.mediator:
            return facts.mediator_id is not None and facts.mediator_id == actor.user_id and stage in MEDIATOR_STAGES
        case Role.legal_aid_officer:
            return _in_region(actor, facts) and PHASE_OF_STAGE[stage] is Phase.legal_aid
        case Role.supervisor:
            return _in_region(actor, facts)
        case _:
            return False


def sees_id_number(actor: Actor | None, facts: CaseFacts) -> bool:
    """Only a legal-aid officer of the case's region, while the case is in a legal-aid stage."""
    return (actor is not None and actor.role is Role.legal_aid_officer and _in_region(actor, facts)
            and PHASE_OF_STAGE[Stage(facts.stage)] is Phase.legal_aid)


ERASED = "(erased)"  # as disputeflow.db.erasure writes it: nothing left to mask


def mask_name(name: str) -> str:
    """The first character, then one `*` per further character (at least one): `张三` -> `张*`."""
    if name == ERASED:
        return name
    name = name.strip()
    if not name:
        return "*"
    return name[0] + "*" * max(1, len(name) - 1)


def mask_phone(phone: str) -> str:
    """The number without +86, its first 3 and last 4 digits kept and the middle starred:
    `+8613800138000` -> `138****8000`; a short number keeps only its last 2 digits."""
    if phone == ERASED:
        return phone
    digits = "".join(ch for ch in phone if ch.isdigit())
    if phone.startswith("+86"):
        digits = digits[2:]
    if len(digits) >= 9:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return "*" * max(1, len(digits) - 2) + digits[-2:]
