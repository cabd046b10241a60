"""The SLA policy table: which clocks run for which cases, their targets, and regional overrides.

Every deadline of the process (docs/process.md) lives in a versioned TOML file (`data/policy.toml`),
never in code. A case resolves the table once, at intake, into a `CasePolicy` it pins for life, so a
later edit of the file changes new cases only and old histories still replay.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from disputeflow.domain.calendar import (
    DEFAULT_OFFICE_HOURS,
    BusinessCalendar,
    CalendarData,
    OfficeHours,
    OfficeHoursList,
)
from disputeflow.domain.enums import Category, DisputeType, SpecialGroup, Stage, Urgency

# Plain path arithmetic (no resolve()): importing this module inside the workflow sandbox does no I/O.
DEFAULT_POLICY_PATH = Path(__file__).parent.parent / "data" / "policy.toml"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and what to fix."""


# -- Targets ---------------------------------------------------------------------------------


class TimeUnit(StrEnum):
    calendar_hours = "calendar_hours"
    calendar_days = "calendar_days"
    working_hours = "working_hours"  # office hours only: lunch, nights, weekends, holidays excluded
    working_days = "working_days"  # ends at close of office hours; the start day is not counted

    @property
    def is_working_time(self) -> bool:
        return self in (TimeUnit.working_hours, TimeUnit.working_days)


_UNIT_WORDS = {
    TimeUnit.calendar_hours: ("calendar hour", "calendar hours"),
    TimeUnit.calendar_days: ("calendar day", "calendar days"),
    TimeUnit.working_hours: ("working hour", "working hours"),
    TimeUnit.working_days: ("working day", "working days"),
}


# The most a person may ask for at once (an extension through the API): a year, in each unit. Beyond
# it a deadline is no deadline, and the calendar would walk day by day to find its end.
REQUEST_LIMITS = {"calendar_hours": 8784, "working_hours": 2000, "calendar_days": 366, "working_days": 250}


def _target_json_schema(schema: dict[str, Any]) -> None:
    """Say in the JSON schema what the validators say: working days are whole days, and a target
    asked for by a person (`RequestedTarget`) is at most a year."""
    schema["anyOf"] = [
        {"properties": {"unit": {"const": unit},
                        "amount": {"type": "integer", "minimum": 1, "maximum": limit} if unit == "working_days"
                        else {"type": "number", "exclusiveMinimum": 0, "maximum": limit}}}
        for unit, limit in REQUEST_LIMITS.items()
    ]


class Target(BaseModel):
    """A time budget, e.g. 7 working days."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_target_json_schema)

    amount: float = Field(gt=0, allow_inf_nan=False)
    unit: TimeUnit

    @model_validator(mode="after")
    def _whole_working_days(self) -> Target:
        if self.unit is TimeUnit.working_days and not self.amount.is_integer():
            raise ValueError(f"a working_days target must be a whole number of days, got {self.amount:g}")
        return self

    def __str__(self) -> str:
        singular, plural = _UNIT_WORDS[self.unit]
        return f"{self.amount:g} {singular if self.amount == 1 else plural}"


def deadline(calendar: BusinessCalendar, start: datetime, target: Target) -> datetime:
    """When `target` runs out for something started at `start`, in UTC."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be a timezone-aware datetime, got naive {start.isoformat()}")
    match target.unit:
        case TimeUnit.calendar_hours:
            return (start + timedelta(hours=target.amount)).astimezone(UTC)
        case TimeUnit.calendar_days:
            return (start + timedelta(days=target.amount)).astimezone(UTC)
        case TimeUnit.working_hours:
            return calendar.add_working_seconds(start, target.amount * 3600).astimezone(UTC)
        case TimeUnit.working_days:
            return calendar.end_of_nth_working_day_after(start, int(target.amount))


# -- Rules -----------------------------------------------------------------------------------


class BreachAction(StrEnum):
    notify_supervisor = "notify_supervisor"
    escalate = "escalate"
    lapse = "lapse"  # the stage lapses: the case takes that stage's default onward path


def _region_code_prefix(code: str) -> str:
    if not (code.isascii() and code.isdigit() and len(code) in (2, 4, 6)):
        raise ValueError(f"a region code is 2 (province), 4 (city) or 6 (county) digits, got {code!r}")
    return code


RegionPrefix = Annotated[str, AfterValidator(_region_code_prefix)]


def _region_code(code: str) -> str:
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        raise ValueError(f"a case's region code is a 6-digit administrative code, got {code!r}")
    return code


RegionCode = Annotated[str, AfterValidator(_region_code)]


class CaseFacts(BaseModel):
    """What a case is, as far as choosing its clock rules is concerned."""

    region_code: RegionCode
    category: Category
    dispute_type: DisputeType = DisputeType.other
    urgency: Urgency = Urgency.normal
    special_groups: list[SpecialGroup] = Field(default_factory=list)


class Match(BaseModel):
    """Which cases a rule applies to; an empty list means any value."""

    model_config = ConfigDict(extra="forbid")

    categories: list[Category] = Field(default_factory=list)
    urgencies: list[Urgency] = Field(default_factory=list)
    special_groups: list[SpecialGroup] = Field(default_factory=list)  # the case has ANY of them
    dispute_types: list[DisputeType] = Field(default_factory=list)
    region_prefixes: list[RegionPrefix] = Field(default_factory=list)

    @property
    def specificity(self) -> int:
        """How many conditions the rule sets; the most specific matching rule wins."""
        return sum(
            bool(condition)
            for condition in (
                self.categories,
                self.urgencies,
                self.special_groups,
                self.dispute_types,
                self.region_prefixes,
            )
        )

    def matches(self, facts: CaseFacts) -> bool:
        return (
            (not self.categories or facts.category in self.categories)
            and (not self.urgencies or facts.urgency in self.urgencies)
            and (not self.special_groups or any(g in self.special_groups for g in facts.special_groups))
            and (not self.dispute_types or facts.dispute_type in self.dispute_types)
            and (not self.region_prefixes or any(facts.region_code.startswith(p) for p in self.region_prefixes))
        )


def _check_warnings(fractions: list[float]) -> list[float]:
    for fraction in fractions:
        if not 0 < fraction < 1:
            raise ValueError(f"each warning is a fraction strictly between 0 and 1, got {fraction}")
    if any(later <= earlier for earlier, later in zip(fractions, fractions[1:], strict=False)):
        raise ValueError(f"warnings must be in increasing order without repeats, got {fractions}")
    return fractions


def _check_unique_actions(actions: list[BreachAction]) -> list[BreachAction]:
    if len(set(actions)) != len(actions):
        raise ValueError(f"on_breach lists an action twice: {[a.value for a in actions]}")
    return actions


Warnings = Annotated[list[float], AfterValidator(_check_warnings)]
BreachActions = Annotated[list[BreachAction], AfterValidator(_check_unique_actions)]


class ClockSpec(BaseModel):
    """A clock rule resolved for one case: what `start_clock` needs, pinned with the case."""

    model_config = ConfigDict(frozen=True)

    clock: str
    stage: Stage
    title: str
    target: Target
    warnings: list[float]
    on_breach: list[BreachAction]
    source: str


class ClockRule(BaseModel):
    """One row of the policy table: a clock of a stage, for the cases `when` matches."""

    model_config = ConfigDict(extra="forbid")

    clock: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    stage: Stage
    title: str = Field(min_length=1)
    target: Target
    warnings: Warnings = Field(default_factory=lambda: [0.5, 0.8])
    on_breach: BreachActions = Field(default_factory=lambda: [BreachAction.notify_supervisor])
    when: Match = Field(default_factory=Match)
    source: str = ""  # the legal or local-rule citation, shown with the clock

    def spec(self) -> ClockSpec:
        return ClockSpec(
            clock=self.clock,
            stage=self.stage,
            title=self.title,
            target=self.target,
            warnings=list(self.warnings),
            on_breach=list(self.on_breach),
            source=self.source,
        )


class MediationRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_sessions: int = Field(default=3, ge=1)  # failed sessions before the case escalates
    extension: Target = Target(amount=30, unit=TimeUnit.calendar_days)
    max_extensions: int = Field(default=1, ge=0)


class LegalAidRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    income_threshold: float = Field(default=2000, gt=0, allow_inf_nan=False)  # CNY per capita per month
    exempt_groups: list[SpecialGroup] = Field(
        default_factory=lambda: [
            SpecialGroup.low_income,
            SpecialGroup.disabled,
            SpecialGroup.minor,
            SpecialGroup.military_dependant,
            SpecialGroup.retired_soldier,
        ]
    )
    exempt_dispute_types: list[DisputeType] = Field(default_factory=lambda: [DisputeType.labour_wages])
    advance_aid_within: Target = Target(amount=7, unit=TimeUnit.calendar_days)
    review_request_window: Target = Target(amount=15, unit=TimeUnit.calendar_days)


class FollowUpRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    review_if_satisfaction_at_most: int = Field(default=2, ge=1, le=5)


class RetentionRules(BaseModel):
    """How long personal data is kept (docs/data-protection.md#retention-and-erasure)."""

    model_config = ConfigDict(extra="forbid")

    # Days after a case closes until the retention sweep anonymises it in the read model. Not pinned
    # by cases: the sweep applies the policy file in force when it runs.
    closed_case_days: int = Field(default=1095, ge=1, le=36_500)


class RegionPolicy(BaseModel):
    """A province's, city's or county's departures from the national table."""

    model_config = ConfigDict(extra="forbid")

    clocks: list[ClockRule] = Field(default_factory=list)  # replace the base rules of the same clock name
    extra_holidays: list[date] = Field(default_factory=list)
    extra_workdays: list[date] = Field(default_factory=list)
    office_hours: OfficeHoursList | None = None
    legal_aid_income_threshold: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _no_day_both_off_and_working(self) -> RegionPolicy:
        if clash := sorted(set(self.extra_holidays) & set(self.extra_workdays)):
            raise ValueError(
                "days listed both as extra_holidays and extra_workdays: " + ", ".join(d.isoformat() for d in clash)
            )
        return self


class PolicyTable(BaseModel):
    """The whole policy file."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    clocks: list[ClockRule]
    mediation: MediationRules = Field(default_factory=MediationRules)
    legal_aid: LegalAidRules = Field(default_factory=LegalAidRules)
    follow_up: FollowUpRules = Field(default_factory=FollowUpRules)
    retention: RetentionRules = Field(default_factory=RetentionRules)
    office_hours: OfficeHoursList = Field(default_factory=lambda: list(DEFAULT_OFFICE_HOURS))
    regions: dict[RegionPrefix, RegionPolicy] = Field(default_factory=dict)
    max_history_events: int = Field(default=10_000, ge=100)  # continue-as-new threshold
    fingerprint: str = ""  # first 12 hex digits of the file's SHA-256; "" when built in code

    @model_validator(mode="after")
    def _one_stage_per_clock(self) -> PolicyTable:
        # The workflow names clocks by name alone (clock ids, tasks, events), and a region replaces
        # rules by name, so a name must mean the same stage everywhere in the file.
        stages: dict[str, tuple[Stage, str]] = {}
        sources = [("clocks", self.clocks)] + [
            (f"regions.{code}.clocks", region.clocks) for code, region in self.regions.items()
        ]
        for where, rules in sources:
            for index, rule in enumerate(rules):
                first = stages.setdefault(rule.clock, (rule.stage, f"{where}[{index}]"))
                if first[0] is not rule.stage:
                    raise ValueError(
                        f"clock {rule.clock!r} is in stage {first[0].value!r} at {first[1]} but in stage "
                        f"{rule.stage.value!r} at {where}[{index}]; a clock name belongs to one stage"
                    )
        return self


def load_policy(path: Path) -> PolicyTable:
    """Read and validate a policy file; the only function here that touches the file system.

    Call it outside workflows; the workflow receives the resolved `CasePolicy`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    if "fingerprint" in data:
        raise PolicyError(f"{path}: fingerprint: remove it; it is computed from the file's bytes")
    try:
        table = PolicyTable.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe_validation_errors(path, exc, data)) from None
    return table.model_copy(update={"fingerprint": hashlib.sha256(raw).hexdigest()[:12]})


def _describe_validation_errors(path: Path, exc: ValidationError, data: dict[str, Any]) -> str:
    errors = exc.errors(include_url=False)
    lines = [f"{path}: invalid policy, {len(errors)} problem(s):"]
    for error in errors:
        where, clock = _location(error["loc"], data)
        about = f" (clock {clock!r})" if clock else ""
        message = error["msg"].removeprefix("Value error, ")
        shown = error.get("input")
        # Our own checks (value_error) already quote the value; a whole table or list would be noise.
        quiet = error["type"] in ("missing", "value_error") or isinstance(shown, dict | list)
        got = "" if quiet else f" (got {shown!r})"
        lines.append(f"  - {where or '(top level)'}{about}: {message}{got}")
    return "\n".join(lines)


def _location(loc: tuple[int | str, ...], data: Any) -> tuple[str, str | None]:
    """A TOML-style path such as clocks[3].target.amount, and the clock name it sits in, if any."""
    path, clock, node = "", None, data
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("clock"), str):
                clock = node["clock"]
        elif part == "[key]":
            path += " (the key)"
        else:
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, dict) else None
    return path, clock


# -- Regions ---------------------------------------------------------------------------------


def region_chain(policy: PolicyTable, region_code: str) -> list[RegionPolicy]:
    """The province, city and county overrides that exist for a 6-digit code, least specific first."""
    code = _region_code(region_code)
    return [policy.regions[prefix] for prefix in (code[:2], code[:4], code) if prefix in policy.regions]


def effective_clock_rules(policy: PolicyTable, region_code: str) -> list[ClockRule]:
    """The base rules with each region's rules replacing, by clock name, those of its parents."""
    rules = list(policy.clocks)
    for region in region_chain(policy, region_code):
        replaced = {rule.clock for rule in region.clocks}
        if replaced:
            rules = [rule for rule in rules if rule.clock not in replaced] + list(region.clocks)
    return rules


def region_calendar_inputs(
    policy: PolicyTable, region_code: str
) -> tuple[list[date], list[date], list[OfficeHours]]:
    """(extra_holidays, extra_workdays, office_hours) for `calendar_data_from_holidays`.

    Extras accumulate down the chain; where a county and its province disagree about a day, and
    for office hours, the most specific region wins.
    """
    days_off: set[date] = set()
    days_on: set[date] = set()
    office_hours = list(policy.office_hours)
    for region in region_chain(policy, region_code):
        days_off = (days_off - set(region.extra_workdays)) | set(region.extra_holidays)
        days_on = (days_on - set(region.extra_holidays)) | set(region.extra_workdays)
        if region.office_hours is not None:
            office_hours = list(region.office_hours)
    return sorted(days_off), sorted(days_on), office_hours


def region_income_threshold(policy: PolicyTable, region_code: str) -> float:
    """The legal-aid means-test threshold for a region: the most specific override wins."""
    threshold = policy.legal_aid.income_threshold
    for region in region_chain(policy, region_code):
        if region.legal_aid_income_threshold is not None:
            threshold = region.legal_aid_income_threshold
    return threshold


# -- Resolution for one case -----------------------------------------------------------------


class CasePolicy(BaseModel):
    """The policy a case pins at intake: resolved for its region and facts, with its calendar."""

    version: str
    fingerprint: str
    clocks: dict[Stage, list[ClockSpec]]
    mediation: MediationRules
    legal_aid: LegalAidRules  # income_threshold already resolved for the case's region
    follow_up: FollowUpRules
    calendar: CalendarData
    max_history_events: int

    def clocks_for(self, stage: Stage) -> list[ClockSpec]:
        return list(self.clocks.get(stage, []))


def resolve_case_policy(policy: PolicyTable, facts: CaseFacts, calendar: CalendarData) -> CasePolicy:
    """Pick, for every (stage, clock), the most specific matching rule; ties go to the later rule.

    A clock whose rules all fail to match does not run for this case.
    """
    chosen: dict[tuple[Stage, str], ClockRule] = {}
    for rule in effective_clock_rules(policy, facts.region_code):
        if not rule.when.matches(facts):
            continue
        key = (rule.stage, rule.clock)
        best = chosen.get(key)
        if best is None or rule.when.specificity >= best.when.specificity:
            chosen[key] = rule
    clocks: dict[Stage, list[ClockSpec]] = {}
    for (stage, _), rule in chosen.items():
        clocks.setdefault(stage, []).append(rule.spec())
    return CasePolicy(
        version=policy.version,
        fingerprint=policy.fingerprint,
        clocks=clocks,
        mediation=policy.mediation.model_copy(deep=True),
        legal_aid=policy.legal_aid.model_copy(
            update={"income_threshold": region_income_threshold(policy, facts.region_code)}, deep=True
        ),
        follow_up=policy.follow_up.model_copy(deep=True),
        calendar=calendar,
        max_history_events=policy.max_history_events,
    )
