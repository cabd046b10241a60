"""The patterns the OpenAPI document gives for intake's identifiers say exactly what intake accepts."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from disputeflow.domain.intake import ID_NUMBER_RULE, Caller
from disputeflow.domain.patterns import ID_NUMBER_PATTERN, PHONE_PATTERN, REGION_CODE_PATTERN, matches

LOOSE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@LOOSE
@given(st.from_regex(re.compile(PHONE_PATTERN, re.ASCII), fullmatch=True))
def test_every_phone_the_pattern_allows_is_a_valid_number_intake_accepts(phone: str) -> None:
    assert phonenumbers.is_valid_number(phonenumbers.parse(phone, "CN"))
    assert Caller.model_validate({"name": "张三", "phone": phone}).phone.startswith("+86")


@pytest.mark.parametrize("phone", ["13800138000", "+86 138 0013 8000", "0086-13800138000", "0531-86012348",
                                   "+86 531 8601 2348", "138-0013-8000"])
def test_the_usual_forms_are_allowed(phone: str) -> None:
    assert matches(PHONE_PATTERN, phone)
    Caller.model_validate({"name": "张三", "phone": phone})


@pytest.mark.parametrize("phone", ["sup-1", "12345", "(0531) 86012348", "138  0013 8000", "13800138000\n",
                                   "１３８００１３８０００", "+1 202 555 0100", "10086"])
def test_what_the_pattern_refuses_intake_refuses(phone: str) -> None:
    assert not matches(PHONE_PATTERN, phone)
    with pytest.raises(ValidationError):
        Caller.model_validate({"name": "张三", "phone": phone})


def test_identity_numbers_shape_in_the_pattern_check_digit_as_a_rule() -> None:
    assert matches(ID_NUMBER_PATTERN, "11010519491231002X") and matches(ID_NUMBER_PATTERN, "")
    assert not matches(ID_NUMBER_PATTERN, "11010519490229002X")  # 1949 was not a leap year
    assert matches(ID_NUMBER_PATTERN, "11010520000229002X")
    with pytest.raises(ValidationError) as refused:
        Caller.model_validate({"name": "张三", "phone": "13800138000", "id_number": "110105194912310021"})
    assert [e["type"] for e in refused.value.errors()] == [ID_NUMBER_RULE]
    assert "110105194912310021" not in str(refused.value.errors()[0]["msg"])  # the number is not echoed


@LOOSE
@given(st.from_regex(re.compile(ID_NUMBER_PATTERN, re.ASCII), fullmatch=True))
def test_an_identity_number_the_pattern_allows_is_accepted_or_refused_only_by_the_rule(number: str) -> None:
    try:
        Caller.model_validate({"name": "张三", "phone": "13800138000", "id_number": number})
    except ValidationError as refused:
        assert [e["type"] for e in refused.errors()] == [ID_NUMBER_RULE]


def test_region_codes() -> None:
    assert matches(REGION_CODE_PATTERN, "370102") and not matches(REGION_CODE_PATTERN, "990102")
