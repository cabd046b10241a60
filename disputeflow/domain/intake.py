"""What a hotline operator records when a call comes in, validated the way the hotline needs it."""

from __future__ import annotations

import phonenumbers
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum
from stdnum.exceptions import ValidationError as StdnumValidationError

from disputeflow.domain.enums import Category, Channel, DisputeType, SpecialGroup, Urgency
from disputeflow.domain.patterns import (
    ID_NUMBER_PATTERN,
    PHONE_PATTERN,
    PROVINCE_PREFIXES,
    REGION_CODE_PATTERN,
    matches,
)
from disputeflow.domain.text import multi_line, single_line

__all__ = ["PROVINCE_PREFIXES", "Caller", "Intake", "ID_NUMBER_RULE"]

# The error type of an identity-card number of the right shape that a rule refuses (its check
# digit, or a birthplace code naming no county of its birth year): not malformed input but a fact
# about the number, which the API answers with 409 and this reason.
ID_NUMBER_RULE = "id_number_rule"

MAX_DESCRIPTION_CHARS = 2000


def valid_id_number(value: str | None, info: ValidationInfo | None = None) -> str | None:
    """A resident identity card number with its check digit and birthplace verified, in its standard
    form; None for blank. Its shape is `ID_NUMBER_PATTERN`'s (checked before); what only code can
    check raises the `ID_NUMBER_RULE` error, which the API answers with 409."""
    if value is None or not value.strip():
        return None
    try:
        return ric.validate(value)
    except (StdnumValidationError, KeyError) as exc:  # KeyError: a birthplace stdnum knows only in part
        reason = ("its check digit does not match its other digits" if isinstance(exc, InvalidChecksum)
                  else "its first six digits name no county that existed in its birth year")
        raise PydanticCustomError(
            ID_NUMBER_RULE, "the identity card number does not hold together ({reason}): check it with the "
            "caller, or leave it out", {"reason": reason}) from None


# The identity card number where a rule needs it (a legal-aid application: open_legal_aid,
# assess_eligibility). Never event data: it lives in the case's state, encrypted in Temporal.
IdNumber = Annotated[str, StringConstraints(pattern=ID_NUMBER_PATTERN), AfterValidator(valid_id_number)]


class Caller(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: single_line(min_length=1, max_length=50) = Field(examples=["张三"])
    phone: str = Field(
        description="Mainland number, mobile or fixed line (a fixed line with its area code), digits with at most "
                    "one space or hyphen after any digit, optionally after +86 or 0086; stored in E.164 form",
        examples=["13800138000", "0531-86012348"], json_schema_extra={"pattern": PHONE_PATTERN})
    id_number: IdNumber | None = Field(
        default=None, description="Resident identity card number: 18 characters with a birth date that exists, its "
                                  "check digit and birthplace code verified (a number that fails those is 409). Only for a "
                                  "legal-aid application (category `legal_aid`); otherwise give it when the application is "
                                  "opened (`open_legal_aid`, `assess_eligibility`)"
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str, info: ValidationInfo) -> str:
        # Python input (the API) is held to the documented pattern; a value read back from a
        # recorded payload (JSON) was accepted then and is taken in the E.164 form it was stored in.
        if info.mode != "json" and not matches(PHONE_PATTERN, value):
            raise ValueError("not a mainland phone number (mobile: 11 digits; fixed line: 0, area code, number; "
                             "optionally after +86; one space or hyphen at most between digits)")
        try:
            number = phonenumbers.parse(value, "CN")
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number (mobile: 11 digits; landline: area code + number)")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class Intake(BaseModel):
    """A registered call, online form, walk-in or 12345 work order."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    caller: Caller
    region_code: str = Field(
        pattern=r"^\d{6}$", json_schema_extra={"pattern": REGION_CODE_PATTERN}, examples=["370102"],
        description="6-digit administrative division code, under a province-level prefix",
    )
    category: Category
    dispute_type: DisputeType = DisputeType.other
    urgency: Urgency = Urgency.normal
    special_groups: list[SpecialGroup] = Field(default_factory=list)
    description: multi_line(min_length=1, max_length=MAX_DESCRIPTION_CHARS) = Field(
        examples=["工地拖欠三个月工资，共计一万二千元，包工头失联。"]
    )
    counterparty: single_line(max_length=100) | None = None
    transfer_order_id: single_line(max_length=64) | None = Field(
        default=None, description="The 12345 work order number, for transferred cases"
    )

    @field_validator("region_code")
    @classmethod
    def _region(cls, value: str) -> str:
        if value[:2] not in PROVINCE_PREFIXES:
            raise ValueError(f"{value[:2]} is not a province-level prefix of an administrative code")
        return value

    @field_validator("special_groups")
    @classmethod
    def _unique_groups(cls, value: list[SpecialGroup]) -> list[SpecialGroup]:
        return sorted(set(value))
