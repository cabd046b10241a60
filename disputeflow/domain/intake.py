"""What a hotline operator records when a call comes in, validated the way the hotline needs it."""

from __future__ import annotations

import phonenumbers
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumValidationError

from disputeflow.domain.enums import Category, Channel, DisputeType, SpecialGroup, Urgency
from disputeflow.domain.text import SingleLine, multi_line, single_line

# Province-level prefixes of the 6-digit administrative division codes (GB/T 2260).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)

MAX_DESCRIPTION_CHARS = 2000


def valid_id_number(value: str | None) -> str | None:
    """A resident identity card number with its check digit verified, in its standard form; None for blank."""
    if value is None or not value.strip():
        return None
    try:
        return ric.validate(value)
    except StdnumValidationError as exc:
        raise ValueError(f"not a valid resident identity card number: {exc}") from None


# The identity card number where a rule needs it (a legal-aid application: open_legal_aid,
# assess_eligibility). Never event data: it lives in the case's state, encrypted in Temporal.
IdNumber = Annotated[SingleLine, AfterValidator(valid_id_number)]


class Caller(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: single_line(min_length=1, max_length=50) = Field(examples=["张三"])
    phone: SingleLine = Field(description="Mainland number; stored in E.164 form", examples=["13800138000"])
    id_number: SingleLine | None = Field(
        default=None, description="Resident identity card number (check digit verified). Only for a legal-aid "
                                  "application (category `legal_aid`); otherwise give it when the application is "
                                  "opened (`open_legal_aid`, `assess_eligibility`)"
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        try:
            number = phonenumbers.parse(value, "CN")
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number (mobile: 11 digits; landline: area code + number)")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        return valid_id_number(value)


class Intake(BaseModel):
    """A registered call, online form, walk-in or 12345 work order."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    caller: Caller
    region_code: str = Field(
        pattern=r"^\d{6}$", description="6-digit administrative division code", examples=["370102"]
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
