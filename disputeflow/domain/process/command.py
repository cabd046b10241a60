"""What every command is: its fields, and beside them everything the process says about it.

A command declares, in one class: the stages it is allowed in, the roles that may give it, what
it does in words (for refusals and route summaries), an example body for the API's docs, its own
guard (a rule beyond stage and role), its transition (`apply`), and the sentence the auditor's
timeline prints for it (`did`, read from the recorded fields, so an old history still reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.enums import Role, Stage
from disputeflow.domain.text import multi_line, single_line

# Free text (see disputeflow.domain.text): NFC, no NUL, control or bidi-override characters; notes
# and reasons may span lines, ids may not.
Note = multi_line(max_length=2000)
Reason = multi_line(min_length=1, max_length=2000)
Ident = single_line(min_length=1, max_length=64)

OPEN_STAGES = frozenset(Stage) - {Stage.closed}
STAFF = frozenset({Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor})


# Every reason an action can be refused, by a stable code: the console words each in its own
# languages (`refusal.<code>`); the message, in English, is what the API answers.
REFUSAL_CODES = frozenset({
    "case_closed", "role_not_allowed", "stage_not_allowed", "not_assigned_mediator", "outside_region",
    "unknown_clock", "clock_ended", "clock_not_legal_aid", "clock_already_paused", "clock_not_paused",
    "extension_already_requested", "no_extension_requested", "no_mediator_yet", "mediation_extension_limit",
    "no_mediation_deadline", "confirmation_already_recorded", "no_materials_requested", "materials_missing",
    "eligibility_not_assessed", "not_eligible", "legal_aid_not_approved",
})


class Refused(Exception):
    """An action that is not allowed now, by this actor; the message says why, for a person. `code`
    (one of REFUSAL_CODES) and `params` (plain values: ids, enum values, lists of them) say the same
    for a translation."""

    def __init__(self, message: str, *, code: str, **params: Any) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message)
        self.code = code
        self.params = {k: (v.value if hasattr(v, "value") else v) for k, v in params.items()}


class Actor(BaseModel):
    """Who acts: taken from the bearer token, never from the request body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Ident
    role: Role
    region_code: str | None = Field(default=None, pattern=r"^\d{2}(\d{2}){0,2}$")
    name: str | None = None


class Effects(BaseModel):
    """Work the legacy workflow does with activities after a change (`CaseState.wanted`, in the
    form it reads)."""

    assign_mediator: bool = False
    exclude_mediators: list[str] = Field(default_factory=list)
    assign_lawyer: bool = False


@dataclass(frozen=True)
class Change:
    """The circumstances of one action: when, on which calendar, by whom; `chosen` is the mediator
    or lawyer the action names, when the legacy workflow looked them up beforehand."""

    now: datetime
    cal: BusinessCalendar
    actor: Actor
    chosen: Any = None  # Assignee | None


def _type_required(schema: dict[str, Any]) -> None:
    """A command on its own (a drill's action) names its type: the union is told apart by it."""
    schema.setdefault("required", [])
    if "type" not in schema["required"]:
        schema["required"].insert(0, "type")


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_type_required)

    stages: ClassVar[frozenset[Stage]]
    roles: ClassVar[frozenset[Role]]
    what: ClassVar[str]  # "send a case to mediation": refusals, route summaries
    example: ClassVar[dict[str, Any] | None] = None  # a body for the API's docs

    def guard(self, state: Any, actor: Actor) -> None:
        """Raise `Refused` if a rule beyond stage and role forbids this now. Writes nothing."""

    def apply(self, state: Any, change: Change) -> Effects | None:
        raise NotImplementedError

    @classmethod
    def did(cls, c: dict[str, Any]) -> str:
        """What the action did, in the past tense, from its recorded fields (plain JSON)."""
        raise NotImplementedError


def words(value: Any) -> str:
    return str(value).replace("_", " ") if value is not None else "?"


def note(text: Any) -> str:
    return f" ({text})" if text else ""


def span(by: Any) -> str:
    """A recorded target as words: {"amount": 10.0, "unit": "calendar_days"} -> "10 calendar days"."""
    by = by if isinstance(by, dict) else {}
    amount = by.get("amount")
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)
    return f"{amount} {words(by.get('unit'))}"
