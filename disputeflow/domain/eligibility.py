"""Legal-aid eligibility: the means test and its exemptions (Legal Aid Law 2021 Arts. 31, 42, 44)."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel

from disputeflow.domain.enums import DisputeType, SpecialGroup
from disputeflow.domain.policy import LegalAidRules, TimeUnit


class EligibilityResult(BaseModel):
    eligible: bool
    means_test_applied: bool
    income_per_capita: float
    threshold: float
    exempt_because: list[str]
    advance_aid: bool  # a limitation period runs out soon: aid may start before the decision
    explanation: str


def _advance_window(rules: LegalAidRules) -> timedelta:
    target = rules.advance_aid_within
    if target.unit in (TimeUnit.calendar_days, TimeUnit.working_days):
        return timedelta(days=target.amount)
    return timedelta(hours=target.amount)


def assess(
    *,
    income_per_capita: float,
    special_groups: list[SpecialGroup],
    dispute_type: DisputeType,
    rules: LegalAidRules,
    today: date,
    limitation_deadline: date | None = None,
) -> EligibilityResult:
    """Apply the region's means test unless a special group or the case type is exempt from it."""
    exempt = [f"special group: {g.value}" for g in special_groups if g in rules.exempt_groups]
    if dispute_type in rules.exempt_dispute_types:
        exempt.append(f"case type: {dispute_type.value}")
    advance = limitation_deadline is not None and (limitation_deadline - today) < _advance_window(rules)
    if exempt:
        eligible = True
        explanation = "exempt from the means test (" + "; ".join(exempt) + ")"
    else:
        eligible = income_per_capita <= rules.income_threshold
        relation = "within" if eligible else "above"
        explanation = (
            f"monthly income per capita {income_per_capita:.2f} is {relation} "
            f"the regional threshold {rules.income_threshold:.2f}"
        )
    if advance:
        explanation += f"; limitation deadline {limitation_deadline.isoformat()} is near: advance aid possible"
    return EligibilityResult(
        eligible=eligible,
        means_test_applied=not exempt,
        income_per_capita=income_per_capita,
        threshold=rules.income_threshold,
        exempt_because=exempt,
        advance_aid=advance,
        explanation=explanation,
    )
