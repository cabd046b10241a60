"""Intake validation and the legal-aid means test: pure rules."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from disputeflow.domain.eligibility import assess
from disputeflow.domain.enums import DisputeType, SpecialGroup
from disputeflow.domain.policy import LegalAidRules, Target, TimeUnit
from tests.workflows.conftest import make_intake


def error_fields(exc: ValidationError) -> set[tuple]:
    return {tuple(e["loc"]) for e in exc.errors()}


def test_a_valid_intake_is_normalised() -> None:
    intake = make_intake(caller={"name": " 李四 ", "phone": "0531-86012348", "id_number": "11010519491231002X"},
                         special_groups=["elderly", "disabled", "elderly"])
    assert intake.caller.phone == "+8653186012348"
    assert intake.caller.name == "李四"
    assert intake.special_groups == [SpecialGroup.disabled, SpecialGroup.elderly]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"caller": {"name": "张三", "phone": "12345"}}, ("caller", "phone")),
        ({"caller": {"name": "张三", "phone": "13800138000", "id_number": "110105194912310021"}}, ("caller", "id_number")),
        ({"caller": {"name": "", "phone": "13800138000"}}, ("caller", "name")),
        ({"region_code": "3701"}, ("region_code",)),
        ({"region_code": "990101"}, ("region_code",)),
        ({"category": "gossip"}, ("category",)),
        ({"urgency": "whenever"}, ("urgency",)),
        ({"description": "   "}, ("description",)),
        ({"description": "纠" * 2001}, ("description",)),
        ({"channel": "fax"}, ("channel",)),
    ],
)
def test_bad_intake_names_the_field(override: dict, field: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        make_intake(**override)
    assert field in error_fields(caught.value)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        make_intake(case_id="sneaky")
    assert ("case_id",) in error_fields(caught.value)


RULES = LegalAidRules(
    income_threshold=2000,
    exempt_groups=[SpecialGroup.disabled, SpecialGroup.low_income],
    exempt_dispute_types=[DisputeType.labour_wages],
    advance_aid_within=Target(amount=7, unit=TimeUnit.calendar_days),
    review_request_window=Target(amount=15, unit=TimeUnit.calendar_days),
)
TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("income", "groups", "dispute", "eligible", "means_tested"),
    [
        (1999.99, [], DisputeType.contract_debt, True, True),
        (2000, [], DisputeType.contract_debt, True, True),  # at the threshold: within
        (2000.01, [], DisputeType.contract_debt, False, True),
        (9000, [SpecialGroup.disabled], DisputeType.contract_debt, True, False),
        (9000, [SpecialGroup.elderly], DisputeType.contract_debt, False, True),  # not an exempt group here
        (9000, [], DisputeType.labour_wages, True, False),  # wage arrears: exempt case type
    ],
)
def test_means_test_and_exemptions(income, groups, dispute, eligible, means_tested) -> None:
    result = assess(income_per_capita=income, special_groups=groups, dispute_type=dispute, rules=RULES, today=TODAY)
    assert result.eligible is eligible
    assert result.means_test_applied is means_tested
    assert result.threshold == 2000
    assert ("exempt" in result.explanation) is (not means_tested)


def test_advance_aid_when_a_limitation_period_is_about_to_expire() -> None:
    near = assess(income_per_capita=100, special_groups=[], dispute_type=DisputeType.other, rules=RULES,
                  today=TODAY, limitation_deadline=date(2026, 12, 6))
    far = assess(income_per_capita=100, special_groups=[], dispute_type=DisputeType.other, rules=RULES,
                 today=TODAY, limitation_deadline=date(2026, 12, 7))
    assert near.advance_aid and "advance aid" in near.explanation
    assert not far.advance_aid
