"""What a forecast is asked: the region, the staff, the arrivals, the outcomes, the period, the runs.

Every number a supervisor might change is here, with a default that reads as an ordinary week of a
county's 12348 centre. Nothing here does I/O; `disputeflow.forecast.profile` fills the arrivals
(and the session outcomes) from the read model's last weeks.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Interval
from pydantic import BeforeValidator, Strict, BaseModel, ConfigDict, Field, field_validator, model_validator

from disputeflow.domain.days import Day, Instant
from disputeflow.domain.enums import Category, DisputeType, Urgency

StaffRole = Literal["operator", "mediator", "legal_aid_officer", "supervisor"]


def _whole(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("a whole number")
    return value


# A number as JSON writes it: true and false are not 1 and 0 here.
Number = Annotated[float, Strict()]
def Whole(ge: int, le: int | None = None):  # noqa: N802 - a type
    """A whole number as JSON Schema has it, between `ge` and `le`: 3 and 3.0 are, true and "3" are
    not. (The bounds go before the check, so that the schema says them as minimum and maximum.)"""
    return Annotated[int, Interval(ge=ge, le=le), BeforeValidator(_whole)]
# Days between two events of the outside world: a range (low, high), drawn uniformly.
Days = Annotated[Number, Interval(ge=0, le=365)]
DayRange = tuple[Days, Days]

class Staff(BaseModel):
    """`count` people of a role, each handling up to `per_day` tasks (sessions, decisions, calls) a working day."""

    model_config = ConfigDict(extra="forbid")

    count: Whole(0, 200)
    per_day: float = Field(strict=True, gt=0, le=500)


def default_staff() -> dict[str, Staff]:
    return {
        "operator": Staff(count=3, per_day=40),
        "mediator": Staff(count=4, per_day=4),
        "legal_aid_officer": Staff(count=2, per_day=8),
        "supervisor": Staff(count=1, per_day=12),
    }


class Arrival(BaseModel):
    """Cases a week of one kind. `cases` instead of `per_week`: the exact arrivals (a back-test)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    dispute_type: DisputeType = DisputeType.other
    urgency: Urgency = Urgency.normal
    per_week: float = Field(strict=True, ge=0, le=10_000)


class Shares(BaseModel):
    """Helper: shares that must add up to 1 (within rounding). JSON Schema cannot say that, so it is
    a business rule: `problem()` names it, the route answers 409 with it, `forecast` refuses it."""

    model_config = ConfigDict(extra="forbid")

    def problem(self, name: str) -> str | None:
        total = sum(v for v in self.model_dump().values())
        if abs(total - 1) > 0.01:
            return f"{name}: the shares add up to {total:.3f}, not 1"
        return None


class SessionMix(Shares):
    """How a mediation session ends."""

    agreement: float = Field(strict=True, default=0.45, ge=0, le=1)
    partial: float = Field(strict=True, default=0.15, ge=0, le=1)
    no_agreement: float = Field(strict=True, default=0.25, ge=0, le=1)
    party_absent: float = Field(strict=True, default=0.15, ge=0, le=1)


class EscalationMix(Shares):
    """What a supervisor does with an escalated case."""

    reassign_mediator: float = Field(strict=True, default=0.35, ge=0, le=1)
    refer_out: float = Field(strict=True, default=0.5, ge=0, le=1)
    send_to_legal_aid: float = Field(strict=True, default=0.15, ge=0, le=1)


class Outcomes(BaseModel):
    """The outcome mix and the outside world's delays (days are calendar days unless said)."""

    model_config = ConfigDict(extra="forbid")

    dispute_to_mediation: float = Field(strict=True, default=0.8, ge=0, le=1, description="the rest is referred")
    consultation_answered: float = Field(strict=True, default=0.9, ge=0, le=1, description="the rest is referred")
    referral_accepted: float = Field(strict=True, default=0.9, ge=0, le=1)
    referral_reply_days: DayRange = (1, 6)
    first_session_days: DayRange = (1, 5)  # from assignment to the first session possible
    session_interval_days: float = Field(strict=True, default=5, ge=0, le=60)  # between two sessions of one case
    sessions: SessionMix = Field(default_factory=SessionMix)
    confirmation_applied: float = Field(strict=True, default=0.6, ge=0, le=1)
    confirmation_days: DayRange = (3, 25)
    performed: float = Field(strict=True, default=0.85, ge=0, le=1)
    performance_days: DayRange = (10, 40)
    escalation: EscalationMix = Field(default_factory=EscalationMix)
    legal_aid_approved: float = Field(strict=True, default=0.75, ge=0, le=1)
    legal_aid_outcome_days: DayRange = (20, 90)
    refusal_overturned: float = Field(strict=True, default=0.2, ge=0, le=1)
    dissatisfied: float = Field(strict=True, default=0.08, ge=0, le=1)

    @field_validator("referral_reply_days", "first_session_days", "confirmation_days", "performance_days",
                     "legal_aid_outcome_days")
    @classmethod
    def _low_high(cls, value: tuple[float, float]) -> tuple[float, float]:
        return (min(value), max(value))  # a range given high-first is the same range


class Sweep(BaseModel):
    """Run the forecast at several staffing levels of one role (the other roles as given)."""

    model_config = ConfigDict(extra="forbid")

    role: StaffRole = "mediator"
    levels: list[Whole(1, 200)] = Field(min_length=1, max_length=12)

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: list[int]) -> list[int]:
        return sorted(set(levels))


class ForecastSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region_code: str = Field(default="370102", pattern=r"^\d{6}$")
    start: Day
    weeks: Whole(1, 26) = 8
    runs: Whole(1, 20) = 3
    seed: Whole(0) = 12348
    staff: dict[StaffRole, Staff] = Field(default_factory=default_staff)
    arrivals: list[Arrival] = Field(min_length=1, max_length=200)
    outcomes: Outcomes = Field(default_factory=Outcomes)
    target: float = Field(strict=True, default=0.95, gt=0, le=1)
    sweep: Sweep | None = None
    # A back-test: the period's real arrivals, (registered instant, category, dispute type, urgency),
    # used instead of drawing from `arrivals` (whose rates then only describe them).
    exact_arrivals: list[tuple[Instant, Category, DisputeType, Urgency]] | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _complete(self) -> ForecastSpec:
        for role, staff in default_staff().items():
            self.staff.setdefault(role, staff)  # type: ignore[index]
        return self

    def problems(self) -> list[str]:
        """What the schema cannot say and the forecast cannot run with (a business rule each)."""
        return [p for p in (self.outcomes.sessions.problem("outcomes.sessions"),
                            self.outcomes.escalation.problem("outcomes.escalation")) if p]

    def levels(self) -> list[int]:
        """The staffing levels of the swept role (or its one given level)."""
        if self.sweep is None:
            return [self.staff["mediator"].count]
        return self.sweep.levels

    def swept_role(self) -> StaffRole:
        return self.sweep.role if self.sweep else "mediator"

    def cases_per_run(self) -> float:
        if self.exact_arrivals is not None:
            return len(self.exact_arrivals)
        return sum(a.per_week for a in self.arrivals) * self.weeks


# -- The short forms the command line and the console take ------------------------------------------


def parse_arrival(text: str) -> dict:
    """`CATEGORY[:DISPUTE_TYPE[:URGENCY]]=PER_WEEK`, e.g. `dispute:labour_wages=40`, as an `Arrival`'s
    fields (checked by `Arrival` itself). ValueError when it is not of that shape."""
    kind, per_week = text.strip().split("=", 1)
    parts = kind.strip().split(":")
    out: dict = {"category": parts[0], "per_week": float(per_week)}
    if len(parts) > 1:
        out["dispute_type"] = parts[1]
    if len(parts) > 2:
        out["urgency"] = parts[2]
    if len(parts) > 3:
        raise ValueError(text)
    return out


def parse_levels(text: str) -> list[int]:
    """`2-6` or `2,3,5`: staffing levels. ValueError when it is neither."""
    text = text.strip()
    if "-" in text:
        low, high = text.split("-", 1)
        return list(range(int(low), int(high) + 1))[:50]
    return [int(x) for x in text.split(",")]
