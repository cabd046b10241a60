"""The domain's vocabularies, in the hotline's own words."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    hotline = "hotline"
    online = "online"
    walk_in = "walk_in"
    transfer_12345 = "transfer_12345"


class Category(StrEnum):
    consultation = "consultation"
    dispute = "dispute"
    legal_aid = "legal_aid"
    complaint = "complaint"


class DisputeType(StrEnum):
    labour_wages = "labour_wages"
    marriage_family = "marriage_family"
    neighbours = "neighbours"
    land_property = "land_property"
    contract_debt = "contract_debt"
    consumer = "consumer"
    traffic_accident = "traffic_accident"
    medical = "medical"
    other = "other"


class Urgency(StrEnum):
    normal = "normal"
    urgent = "urgent"
    emergency = "emergency"  # a threat of violence: handled within the hour, 24x7


class SpecialGroup(StrEnum):
    low_income = "low_income"
    disabled = "disabled"
    migrant_worker = "migrant_worker"
    elderly = "elderly"
    minor = "minor"
    single_mother = "single_mother"
    military_dependant = "military_dependant"
    retired_soldier = "retired_soldier"


class Role(StrEnum):
    operator = "operator"  # intake and triage at the hotline
    mediator = "mediator"  # people's mediator, acts on cases assigned to them
    legal_aid_officer = "legal_aid_officer"  # legal-aid centre: review, decision, lawyer assignment
    supervisor = "supervisor"  # region's supervisor: escalations, reassignment, extensions
    auditor = "auditor"  # reads everything in scope, changes nothing
    system = "system"  # timers and automatic rules


class Stage(StrEnum):
    """Where a case is. Each stage has its own clocks in the policy table."""

    triage = "triage"
    referred = "referred"  # handed to another body, awaiting acceptance
    mediation = "mediation"
    agreement = "agreement"  # mediated agreement: confirmation window and performance check
    escalated = "escalated"
    legal_aid_review = "legal_aid_review"  # application received, eligibility and decision
    legal_aid_refused = "legal_aid_refused"  # refused; the applicant may ask for a review
    legal_aid_reconsideration = "legal_aid_reconsideration"  # review of a refusal
    legal_aid_assignment = "legal_aid_assignment"  # approved, a lawyer to assign
    legal_aid_representation = "legal_aid_representation"  # lawyer assigned, awaiting outcome
    follow_up = "follow_up"  # return visit
    supervisor_review = "supervisor_review"  # dissatisfied caller
    closed = "closed"


class Phase(StrEnum):
    """The coarse process steps (intake, triage, mediation, ...; docs/process.md), for reports and dashboards."""

    intake = "intake"
    triage = "triage"
    mediation = "mediation"
    escalation = "escalation"
    legal_aid = "legal_aid"
    follow_up = "follow_up"
    closed = "closed"


PHASE_OF_STAGE: dict[Stage, Phase] = {
    Stage.triage: Phase.triage,
    Stage.referred: Phase.triage,
    Stage.mediation: Phase.mediation,
    Stage.agreement: Phase.mediation,
    Stage.escalated: Phase.escalation,
    Stage.legal_aid_review: Phase.legal_aid,
    Stage.legal_aid_refused: Phase.legal_aid,
    Stage.legal_aid_reconsideration: Phase.legal_aid,
    Stage.legal_aid_assignment: Phase.legal_aid,
    Stage.legal_aid_representation: Phase.legal_aid,
    Stage.follow_up: Phase.follow_up,
    Stage.supervisor_review: Phase.follow_up,
    Stage.closed: Phase.closed,
}


class ReferralBody(StrEnum):
    court = "court"
    labour_arbitration = "labour_arbitration"
    police = "police"
    hotline_12345 = "hotline_12345"
    other_county = "other_county"
    other_department = "other_department"


class SessionOutcome(StrEnum):
    agreement = "agreement"
    partial = "partial"
    no_agreement = "no_agreement"
    party_absent = "party_absent"


class ExternalForum(StrEnum):
    litigation = "litigation"
    arbitration = "arbitration"


class PauseReason(StrEnum):
    awaiting_materials = "awaiting_materials"
    awaiting_party = "awaiting_party"


class FinalOutcome(StrEnum):
    consultation_answered = "consultation_answered"
    referred_accepted = "referred_accepted"
    mediated_agreement_performed = "mediated_agreement_performed"
    referred_to_litigation = "referred_to_litigation"
    referred_to_arbitration = "referred_to_arbitration"
    legal_aid_completed = "legal_aid_completed"
    legal_aid_refused = "legal_aid_refused"
    withdrawn = "withdrawn"
