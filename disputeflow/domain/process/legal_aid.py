"""Legal aid: the application is reviewed (missing materials pause the decision clock), the means
test assessed and a decision made; a refusal may be reviewed; an approved case gets a lawyer, who
represents the applicant until the outcome is recorded."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState
from disputeflow.domain.clocks import Clock
from disputeflow.domain.eligibility import assess
from disputeflow.domain.enums import FinalOutcome, PauseReason, Role, Stage
from disputeflow.domain.intake import IdNumber
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import Actor, Change, Command, Effects, Ident, Note, Reason, Refused, note

OFFICER = frozenset({Role.legal_aid_officer})


class RequestMaterials(Command):
    type: Literal["request_materials"] = "request_materials"
    missing: list[Reason] = Field(min_length=1, max_length=20)

    stages, roles, what = frozenset({Stage.legal_aid_review}), OFFICER, "request missing materials"

    def apply(self, state: CaseState, change: Change) -> None:
        missing = state.legal_aid.missing_materials
        state.legal_aid.missing_materials += [m for m in self.missing if m not in missing]
        c.emit(state, "materials_requested", change.now, change.actor, missing=self.missing)
        for clock in c.stage_clocks(state):
            if not clock.paused:
                c.pause(state, clock, change.now, change.actor, PauseReason.awaiting_materials.value)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "requested missing materials: " + "; ".join(f.get("missing") or [])


class MaterialsSupplied(Command):
    type: Literal["materials_supplied"] = "materials_supplied"
    note: Note = ""

    stages = frozenset({Stage.legal_aid_review})
    roles, what = frozenset({Role.legal_aid_officer, Role.operator}), "record that materials were supplied"

    def guard(self, state: CaseState, actor: Actor) -> None:
        if not state.legal_aid.missing_materials:
            raise Refused("no materials were requested, so none can be supplied", code="no_materials_requested")

    def apply(self, state: CaseState, change: Change) -> None:
        supplied, state.legal_aid.missing_materials = state.legal_aid.missing_materials, []
        c.emit(state, "materials_supplied", change.now, change.actor, supplied=supplied, note=self.note)
        for clock in c.stage_clocks(state):
            if clock.paused and clock.pauses[-1].reason == PauseReason.awaiting_materials.value:
                c.resume(state, clock, change.now, change.cal, change.actor)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return "recorded that the missing materials were supplied" + note(f.get("note"))


class AssessEligibility(Command):
    type: Literal["assess_eligibility"] = "assess_eligibility"
    monthly_income_per_capita: float = Field(ge=0, le=10_000_000)
    limitation_deadline: date | None = Field(
        default=None, description="When a limitation period or procedural deadline runs out, if any"
    )
    id_number: IdNumber | None = Field(
        default=None, description="The applicant's resident identity card number, if not given yet; shown to the "
                                  "region's legal-aid officers only")

    stages, roles, what = frozenset({Stage.legal_aid_review}), OFFICER, "assess legal-aid eligibility"
    example = {"monthly_income_per_capita": 1200, "limitation_deadline": "2026-12-20"}

    def apply(self, state: CaseState, change: Change) -> None:
        if self.id_number is not None:  # kept in the state only, never in event data
            state.intake.caller.id_number = self.id_number
        result = assess(income_per_capita=self.monthly_income_per_capita, special_groups=state.intake.special_groups,
                        dispute_type=state.intake.dispute_type, rules=state.policy.legal_aid,
                        today=change.now.astimezone(SHANGHAI).date(), limitation_deadline=self.limitation_deadline)
        state.legal_aid.assessment = result
        event = c.emit(state, "eligibility_assessed", change.now, change.actor, **result.model_dump(mode="json"))
        if result.advance_aid:
            c.notify(state, event, "advance_aid_possible", Role.legal_aid_officer, change.actor.user_id,
                     explanation=result.explanation)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"assessed legal-aid eligibility (monthly income per capita {f.get('monthly_income_per_capita')})"


class DecideLegalAid(Command):
    type: Literal["decide_legal_aid"] = "decide_legal_aid"
    approve: bool
    reason: Reason

    stages, roles, what = frozenset({Stage.legal_aid_review}), OFFICER, "decide a legal-aid application"
    example = {"approve": True, "reason": "符合经济困难标准"}

    def guard(self, state: CaseState, actor: Actor) -> None:
        if state.legal_aid.missing_materials:
            missing = "; ".join(state.legal_aid.missing_materials)
            raise Refused(f"materials are still missing ({missing}); record them as supplied before deciding",
                          code="materials_missing", missing=list(state.legal_aid.missing_materials))
        if self.approve:
            assessment = state.legal_aid.assessment
            if assessment is None:
                raise Refused("assess eligibility before approving legal aid", code="eligibility_not_assessed")
            if not assessment.eligible:
                raise Refused(f"cannot approve: the applicant is not eligible ({assessment.explanation})",
                              code="not_eligible", explanation=assessment.explanation)

    def apply(self, state: CaseState, change: Change) -> Effects | None:
        state.legal_aid.approved, state.legal_aid.decision_reason = self.approve, self.reason
        if self.approve:
            c.enter(state, Stage.legal_aid_assignment, change.now, change.cal, change.actor, "legal_aid_approved",
                    reason=self.reason)
            c.want(state, "lawyer", change.actor)
            return Effects(assign_lawyer=True)
        event = c.enter(state, Stage.legal_aid_refused, change.now, change.cal, change.actor, "legal_aid_refused",
                        reason=self.reason)
        c.notify(state, event, "legal_aid_refused", Role.operator, None, reason=self.reason)
        return None

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return ("approved" if f.get("approve") else "refused") + f" legal aid ({f.get('reason')})"


class RequestReview(Command):
    type: Literal["request_review"] = "request_review"
    reason: Reason

    stages = frozenset({Stage.legal_aid_refused})
    roles, what = frozenset({Role.operator, Role.legal_aid_officer}), "request a review of a refusal"

    def apply(self, state: CaseState, change: Change) -> None:
        state.legal_aid.review_requested = True
        c.enter(state, Stage.legal_aid_reconsideration, change.now, change.cal, change.actor, "review_requested",
                reason=self.reason)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"requested a review of the refusal ({f.get('reason')})"


class DecideReview(Command):
    type: Literal["decide_review"] = "decide_review"
    overturn: bool = Field(description="True grants legal aid after all")
    reason: Reason

    stages = frozenset({Stage.legal_aid_reconsideration})
    roles, what = frozenset({Role.supervisor}), "decide the review of a refusal"

    def apply(self, state: CaseState, change: Change) -> Effects | None:
        if not self.overturn:
            c.to_follow_up(state, change.now, change.cal, change.actor, FinalOutcome.legal_aid_refused,
                           "refusal_upheld", reason=self.reason)
            return None
        state.legal_aid.approved, state.legal_aid.decision_reason = True, self.reason
        c.enter(state, Stage.legal_aid_assignment, change.now, change.cal, change.actor, "refusal_overturned",
                reason=self.reason)
        c.want(state, "lawyer", change.actor)
        return Effects(assign_lawyer=True)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return ("overturned" if f.get("overturn") else "upheld") + f" the refusal on review ({f.get('reason')})"


class AssignLawyer(Command):
    type: Literal["assign_lawyer"] = "assign_lawyer"
    lawyer_id: Ident

    stages = frozenset({Stage.legal_aid_assignment, Stage.escalated})
    roles, what = frozenset({Role.legal_aid_officer, Role.supervisor}), "assign a lawyer"

    def guard(self, state: CaseState, actor: Actor) -> None:
        if state.stage is Stage.escalated and not state.legal_aid.approved:
            raise Refused("a lawyer can be assigned only after legal aid was approved", code="legal_aid_not_approved")

    def apply(self, state: CaseState, change: Change) -> None:
        if change.chosen is not None:  # looked up before the action (the legacy workflow)
            represent(state, change.chosen, change.now, change.cal, change.actor)
        else:
            c.emit(state, "lawyer_named", change.now, change.actor, lawyer_id=self.lawyer_id)
            c.want(state, "lawyer", change.actor, person_id=self.lawyer_id)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"assigned lawyer {f.get('lawyer_id')}"


class RecordLegalAidOutcome(Command):
    type: Literal["record_legal_aid_outcome"] = "record_legal_aid_outcome"
    outcome: Reason
    note: Note = ""

    stages, roles, what = frozenset({Stage.legal_aid_representation}), OFFICER, "record the outcome of legal aid"

    def apply(self, state: CaseState, change: Change) -> None:
        state.legal_aid.outcome = self.outcome
        c.to_follow_up(state, change.now, change.cal, change.actor, FinalOutcome.legal_aid_completed,
                       "legal_aid_outcome_recorded", outcome=self.outcome, note=self.note)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"recorded the outcome of legal aid: {f.get('outcome')}"


def assign_lawyer(state: CaseState, chosen: Assignee | None, now: datetime, cal: BusinessCalendar) -> None:
    """Record the lawyer the workflow chose; none available leaves it to a legal-aid officer."""
    state.wanted = None
    if chosen is None:
        event = c.emit(state, "no_lawyer_available", now, None, region_code=state.intake.region_code)
        c.notify(state, event, "assign_lawyer_manually", Role.legal_aid_officer, None)
        return
    represent(state, chosen, now, cal, None)


def represent(state: CaseState, chosen: Assignee, now: datetime, cal: BusinessCalendar, actor: Actor | None) -> None:
    state.wanted = None
    state.lawyer = chosen
    c.enter(state, Stage.legal_aid_representation, now, cal, actor, "lawyer_assigned",
            lawyer_id=chosen.id, lawyer_name=chosen.name)


def lapse(state: CaseState, now: datetime, cal: BusinessCalendar, clock: Clock) -> None:
    """A refusal's review window ran out: the case goes to follow-up as refused."""
    if state.stage is Stage.legal_aid_refused:
        c.to_follow_up(state, now, cal, None, FinalOutcome.legal_aid_refused, "review_window_lapsed", clock=clock.name)
