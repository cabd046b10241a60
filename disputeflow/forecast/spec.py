"""What a forecast is asked: the region, the staff, the arrivals, the outcomes, the period, the runs.

Every number a supervisor might change is here, with a default that reads as an ordinary week of a
county's 12348 centre. Nothing here does I/O; `disputeflow.forecast.profile` fills the arrivals
(and the session outcomes) from the read model's last weeks.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Strict, BaseModel, ConfigDict, Field, model_validator

from disputeflow.domain.enums import Category, DisputeType, Urgency

StaffRole = Literal["operator", "mediator", "legal_aid_officer", "supervisor"]


# A number as JSON writes it: true and false are not 1 and 0 here.
Number = Annotated[float, Strict()]

class Staff(BaseModel):
    """`count` people of a role, each handling up to `per_day` tasks (sessions, decisions, calls) a working day."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=0, le=200)
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
    """Helper: shares that must add up to 1 (within rounding)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _sum_to_one(self) -> Shares:
        total = sum(v for v in self.model_dump().values())
        if abs(total - 1) > 0.01:
            raise ValueError(f"{type(self).__name__}: the shares add up to {total:.3f}, not 1")
        return self


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
    referral_reply_days: tuple[Number, Number] = (1, 6)
    first_session_days: tuple[Number, Number] = (1, 5)  # from assignment to the first session possible
    session_interval_days: float = Field(strict=True, default=5, ge=0, le=60)  # between two sessions of one case
    sessions: SessionMix = Field(default_factory=SessionMix)
    confirmation_applied: float = Field(strict=True, default=0.6, ge=0, le=1)
    confirmation_days: tuple[Number, Number] = (3, 25)
    performed: float = Field(strict=True, default=0.85, ge=0, le=1)
    performance_days: tuple[Number, Number] = (10, 40)
    escalation: EscalationMix = Field(default_factory=EscalationMix)
    legal_aid_approved: float = Field(strict=True, default=0.75, ge=0, le=1)
    legal_aid_outcome_days: tuple[Number, Number] = (20, 90)
    refusal_overturned: float = Field(strict=True, default=0.2, ge=0, le=1)
    dissatisfied: float = Field(strict=True, default=0.08, ge=0, le=1)


class Sweep(BaseModel):
    """Run the forecast at several staffing levels of one role (the other roles as given)."""

    model_config = ConfigDict(extra="forbid")

    role: StaffRole = "mediator"
    levels: list[int] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _levels(self) -> Sweep:
        if any(n < 1 or n > 200 for n in self.levels):
            raise ValueError("staffing levels are between 1 and 200 people")
        self.levels = sorted(set(self.levels))
        return self


class ForecastSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region_code: str = Field(default="370102", pattern=r"^\d{6}$")
    start: date
    weeks: int = Field(default=8, ge=1, le=26)
    runs: int = Field(default=3, ge=1, le=20)
    seed: int = 12348
    staff: dict[StaffRole, Staff] = Field(default_factory=default_staff)
    arrivals: list[Arrival] = Field(min_length=1, max_length=200)
    outcomes: Outcomes = Field(default_factory=Outcomes)
    target: float = Field(strict=True, default=0.95, gt=0, le=1)
    sweep: Sweep | None = None
    # A back-test: the period's real arrivals, (registered instant, category, dispute type, urgency),
    # used instead of drawing from `arrivals` (whose rates then only describe them).
    exact_arrivals: list[tuple[str, Category, DisputeType, Urgency]] | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _complete(self) -> ForecastSpec:
        for role, staff in default_staff().items():
            self.staff.setdefault(role, staff)  # type: ignore[index]
        return self

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
