"""Fill an empty read model with a realistic, generated year of a provincial 12348 centre.

For load tests and benchmarks (`disputeflow seed`, `benchmarks/read_model_scale.py`), never for a
production database: the cases have no workflow in Temporal behind them.

What it writes, per case, is what the projection writes: the case row, its tasks (one open task
per open case, done ones for the stages it left), its clocks (started from the real policy table
with the domain's own `start_clock`, so targets, working days and warnings are the policy's), its
domain events, and the compliance counters. Every row is built against the tables' own columns
(`models.py`): a column added to a table without a default, or one renamed, makes the seeder fail
loudly instead of writing a stale shape. Rows go in with bulk INSERTs, many cases per statement.

Generated, not real: region codes are Shandong's counties, names are drawn from common surnames
and given-name characters, phone numbers are random mobile numbers. Deterministic for a seed and
`now`.
"""

from __future__ import annotations

import json
import multiprocessing
import operator
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Table, func, select
from sqlalchemy.engine import Engine

from disputeflow.db import text_index
from disputeflow.db.engine import make_engine
from disputeflow.db.models import (
    CaseEventRecord, CaseNumberCounter, CaseRecord, CaseTaskRecord, ClockRecord, ComplianceCount, Mediator,
    UtcDateTime, phone_digits,
)
from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar, calendar_data_from_holidays
from disputeflow.domain.clocks import start_clock
from disputeflow.domain.enums import PHASE_OF_STAGE, Category, DisputeType, FinalOutcome, Stage, Urgency
from disputeflow.domain.policy import (
    CaseFacts, CasePolicy, PolicyTable, load_policy, region_calendar_inputs, region_chain, resolve_case_policy,
)
from disputeflow.domain.lifecycle import TASK_CLOCKS

# Counties of Shandong (administrative codes, public), weighted roughly by population.
REGIONS: dict[str, int] = {
    "370102": 6, "370103": 5, "370104": 4, "370105": 4, "370112": 6, "370113": 2,  # Jinan
    "370202": 4, "370203": 5, "370211": 8, "370212": 3, "370213": 4, "370214": 5,  # Qingdao
    "370302": 3, "370303": 4, "370402": 3, "370602": 3, "370611": 3, "370702": 3, "370705": 3,
    "370811": 4, "370902": 3, "371002": 3, "371102": 3, "371302": 6, "371311": 4, "371402": 3,
    "371502": 3, "371602": 3, "371702": 4,
}
MEDIATORS_PER_REGION = 6
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌云飞海燕"
MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "158", "159", "177", "180", "182", "185", "186", "187", "188", "189", "199")
DESCRIPTIONS = {
    DisputeType.labour_wages: ("工地拖欠工资，包工头联系不上。", "公司欠发三个月工资。", "辞职后加班费未结算。"),
    DisputeType.marriage_family: ("离婚后抚养费如何确定？", "赡养老人问题家庭内部有分歧。", "彩礼返还纠纷。"),
    DisputeType.neighbours: ("邻居装修噪音扰民。", "宅基地界线争议。", "楼上漏水，协商无果。"),
    DisputeType.land_property: ("土地承包经营权纠纷。", "房屋买卖合同过户争议。"),
    DisputeType.contract_debt: ("借款到期不还。", "货款拖欠半年未付。"),
    DisputeType.consumer: ("预付卡商家关门跑路。", "网购商品质量问题退货被拒。"),
    DisputeType.traffic_accident: ("电动车与汽车相撞，赔偿协商不成。", "交通事故误工费争议。"),
    DisputeType.medical: ("手术后出现并发症，对医院处理不满。",),
    DisputeType.other: ("咨询法律援助申请条件。", "物业服务费争议。"),
}


@dataclass
class SeedReport:
    cases: int = 0
    open_cases: int = 0
    tasks: int = 0
    open_tasks: int = 0
    clocks: int = 0
    events: int = 0
    compliance_rows: int = 0
    mediators: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        closed = self.cases - self.open_cases
        share = closed / self.cases if self.cases else 0
        return (f"{self.cases} cases ({closed} closed, {share:.0%}), {self.tasks} tasks ({self.open_tasks} open), "
                f"{self.clocks} clocks, {self.events} events, {self.compliance_rows} compliance rows, "
                f"{self.mediators} mediators added, in {self.seconds:.1f} s")


class SeedError(RuntimeError):
    """The target database cannot be seeded (it already holds cases)."""


# -- Paths through the process -------------------------------------------------------------------

# (stage, the event that enters it); each path ends in its final outcome.
PATHS: dict[Category, list[tuple[float, list[tuple[Stage, str]], FinalOutcome]]] = {
    Category.consultation: [
        (0.9, [], FinalOutcome.consultation_answered),
        (0.1, [(Stage.referred, "referred")], FinalOutcome.referred_accepted),
    ],
    Category.dispute: [
        (0.55, [(Stage.mediation, "sent_to_mediation"), (Stage.agreement, "agreement_reached"),
                (Stage.follow_up, "agreement_performed")], FinalOutcome.mediated_agreement_performed),
        (0.2, [(Stage.referred, "referred")], FinalOutcome.referred_accepted),
        (0.15, [(Stage.mediation, "sent_to_mediation"), (Stage.escalated, "escalated"),
                (Stage.follow_up, "referred_to_litigation")], FinalOutcome.referred_to_litigation),
        (0.1, [(Stage.mediation, "sent_to_mediation")], FinalOutcome.withdrawn),
    ],
    Category.legal_aid: [
        (0.75, [(Stage.legal_aid_review, "legal_aid_opened"), (Stage.legal_aid_assignment, "legal_aid_approved"),
                (Stage.legal_aid_representation, "lawyer_assigned"), (Stage.follow_up, "legal_aid_completed")],
         FinalOutcome.legal_aid_completed),
        (0.25, [(Stage.legal_aid_review, "legal_aid_opened"), (Stage.legal_aid_refused, "legal_aid_refused")],
         FinalOutcome.legal_aid_refused),
    ],
    Category.complaint: [
        (0.7, [(Stage.escalated, "escalated"), (Stage.follow_up, "escalation_resolved")],
         FinalOutcome.referred_accepted),
        (0.3, [(Stage.referred, "referred")], FinalOutcome.referred_accepted),
    ],
}
TASKS: dict[Stage, list[tuple[str, str, str]]] = {  # kind, title, role (as `lifecycle.open_tasks`)
    Stage.triage: [("triage", "Triage the call: answer, refer, mediate or open legal aid", "operator")],
    Stage.referred: [("confirm_referral", "Confirm the referral was accepted", "operator")],
    Stage.mediation: [("hold_mediation_session", "Hold a mediation session and record its outcome", "mediator")],
    Stage.agreement: [("check_performance", "Check that the agreement is performed", "mediator")],
    Stage.escalated: [("resolve_escalation", "Resolve the escalation: reassign, legal aid or refer out",
                       "supervisor")],
    Stage.legal_aid_review: [("decide_legal_aid", "Assess eligibility and decide the application",
                              "legal_aid_officer")],
    Stage.legal_aid_refused: [("await_review_request", "Wait for a request to review the refusal",
                               "legal_aid_officer")],
    Stage.legal_aid_assignment: [("assign_lawyer", "Assign a lawyer", "legal_aid_officer")],
    Stage.legal_aid_representation: [("record_legal_aid_outcome", "Record the outcome of the legal aid",
                                      "legal_aid_officer")],
    Stage.follow_up: [("return_visit", "Return visit: ask the caller's satisfaction", "operator")],
}
NO_CLOCK_STAGE_DAYS = {Stage.legal_aid_representation: (20, 120), Stage.legal_aid_refused: (5, 15),
                       Stage.legal_aid_assignment: (1, 5), Stage.follow_up: (2, 10)}


def _weighted(rng: random.Random, choices: Sequence[tuple[float, Any]]) -> Any:
    x = rng.random() * sum(w for w, _ in choices)
    for w, value in choices:
        x -= w
        if x <= 0:
            return value
    return choices[-1][1]


# -- Row builders -------------------------------------------------------------------------------


def _checked(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Rows for `table` must name only its columns and every required one (no default, not null)."""
    columns = set(table.c.keys())
    required = {c.name for c in table.c if not c.nullable and c.default is None and c.server_default is None
                and not (c.primary_key and c.name == "id")}

    def check(row: dict[str, Any]) -> dict[str, Any]:
        if unknown := set(row) - columns:
            raise SeedError(f"{table.name}: the seeder writes columns the table lacks: {sorted(unknown)}")
        if missing := required - set(row):
            raise SeedError(f"{table.name}: the seeder does not fill required columns: {sorted(missing)}")
        return row

    return check


@dataclass
class _Batch:
    cases: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.cases.clear(), self.tasks.clear(), self.clocks.clear(), self.events.clear()


class _RememberingCalendar(BusinessCalendar):
    """The domain's calendar, its answers per day remembered: the seeder starts a quarter of a
    million clocks over the same few hundred days. Both are functions of the day alone (no
    fallback callback here)."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self._working: dict[Any, bool] = {}
        self._periods: dict[Any, list[tuple[datetime, datetime]]] = {}

    def is_working_day(self, day: Any) -> bool:
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = super().is_working_day(day)
        return known

    def _office_periods(self, day: Any) -> list[tuple[datetime, datetime]]:
        known = self._periods.get(day)
        if known is None:
            known = self._periods[day] = super()._office_periods(day)
        return known


class Generator:
    """Generates cases one at a time into a batch of rows."""

    def __init__(self, *, seed: int, now: datetime, days: int, policy: PolicyTable) -> None:
        self.rng = random.Random(seed)
        self.now = now.astimezone(UTC)
        self.first = self.now - timedelta(days=days)
        self.policy = policy
        self.regions = list(REGIONS)
        self.region_weights = list(REGIONS.values())
        self.counters: dict[tuple[str, str], int] = {}
        self._calendars: dict[Any, BusinessCalendar] = {}
        self._policies: dict[tuple, CasePolicy] = {}
        years = range(self.first.astimezone(SHANGHAI).year, self.now.astimezone(SHANGHAI).year + 2)
        self._years = list(years)
        self.mediators = {r: [f"med-{r}-{i:02d}" for i in range(1, MEDIATORS_PER_REGION + 1)] for r in REGIONS}
        self.lawyers = {r: [f"law-{r}-{i:02d}" for i in range(1, 4)] for r in REGIONS}
        self.report = SeedReport()
        self.compliance: dict[tuple, list[int]] = {}

    def _calendar(self, region: str) -> BusinessCalendar:
        cal = self._calendars.get(region)
        if cal is None:
            off, on, hours = region_calendar_inputs(self.policy, region)
            key = (tuple(off), tuple(on), tuple(hours))
            cal = self._calendars.get(key)  # regions without overrides share one calendar
            if cal is None:
                data = calendar_data_from_holidays(years=self._years, extra_holidays=off, extra_workdays=on,
                                                   office_hours=hours)
                cal = self._calendars[key] = _RememberingCalendar(data)
            self._calendars[region] = cal
        return cal

    def _case_policy(self, facts: CaseFacts) -> CasePolicy:
        chain = tuple(id(r) for r in region_chain(self.policy, facts.region_code))  # regions with the same rules
        key = (chain, self._calendar(facts.region_code), facts.category, facts.urgency, facts.dispute_type)
        found = self._policies.get(key)
        if found is None:
            found = self._policies[key] = resolve_case_policy(self.policy, facts,
                                                             self._calendar(facts.region_code).data)
        return found

    def _phone(self) -> str:
        rng = self.rng
        return f"+86{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"

    def _name(self) -> str:
        rng = self.rng
        return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))

    def case(self, batch: _Batch, on_clock: Callable[[dict[str, Any]], None],
             window: tuple[datetime, datetime] | None = None) -> None:
        rng = self.rng
        first, last = window or (self.first, self.now)
        opened = first + timedelta(seconds=(last - first).total_seconds() * rng.random())
        region = rng.choices(self.regions, self.region_weights)[0]
        category = _weighted(rng, [(0.35, Category.consultation), (0.45, Category.dispute),
                                   (0.12, Category.legal_aid), (0.08, Category.complaint)])
        dispute_type = _weighted(rng, [(0.3, DisputeType.labour_wages), (0.15, DisputeType.marriage_family),
                                       (0.15, DisputeType.neighbours), (0.08, DisputeType.land_property),
                                       (0.1, DisputeType.contract_debt), (0.08, DisputeType.consumer),
                                       (0.06, DisputeType.traffic_accident), (0.03, DisputeType.medical),
                                       (0.05, DisputeType.other)])
        urgency = _weighted(rng, [(0.85, Urgency.normal), (0.12, Urgency.urgent), (0.03, Urgency.emergency)])
        facts = CaseFacts(region_code=region, category=category, dispute_type=dispute_type, urgency=urgency)
        policy = self._case_policy(facts)
        cal = self._calendar(region)
        day = opened.astimezone(SHANGHAI).strftime("%Y%m%d")
        number = self.counters[(region, day)] = self.counters.get((region, day), 0) + 1
        case_id = f"{region}-{day}-{number:04d}"

        _, path, outcome = _weighted(rng, [(w, (w, p, o)) for w, p, o in PATHS[category]])
        # Most cases move on; a share stall in a stage (waiting for parties, for materials): the
        # open half of the read model.
        stall_at = rng.randrange(len(path) + 1) if rng.random() < 0.5 else None
        stages = [(Stage.triage, "case_opened")] + list(path)
        events: list[tuple[str, datetime, str, dict[str, Any]]] = []  # type, at, stage, data
        clocks_n = 0
        mediator = lawyer = None
        breached = False
        at = opened
        stage = Stage.triage
        closed_at = None
        for index, (stage, entered_by) in enumerate(stages):
            data: dict[str, Any] = {} if index == 0 else {"from_stage": stages[index - 1][0].value}
            if index == 0:
                data = {"channel": "hotline", "region_code": region, "category": category.value,
                        "urgency": urgency.value}
            events.append((entered_by, at, stage.value, data))
            if stage is Stage.mediation and mediator is None:
                mediator = rng.choice(self.mediators[region])
                events.append(("mediator_assigned", at, stage.value, {"mediator_id": mediator}))
            if stage is Stage.legal_aid_representation:
                lawyer = rng.choice(self.lawyers[region])
            clocks = []
            for spec in policy.clocks_for(stage):
                clocks_n += 1
                clock = start_clock(spec, clock_id=f"{spec.clock}-{clocks_n}", now=at, calendar=cal)
                clocks.append(clock)
                events.append(("clock_started", at, stage.value,
                               {"clock_id": clock.clock_id, "clock": clock.name, "due_at": clock.due_at.isoformat()}))
            # When the case leaves this stage: a share of the clock's budget, late now and then.
            if clocks:
                budget = min(c.due_at for c in clocks) - at
                late = rng.random() < 0.08
                share = rng.uniform(1.02, 1.8) if late else rng.betavariate(2, 3) * 0.98
                leaves = at + budget * share
            else:
                low, high = NO_CLOCK_STAGE_DAYS.get(stage, (1, 10))
                leaves = at + timedelta(days=rng.uniform(low, high))
            last = index == len(stages) - 1
            stays = leaves > self.now or stall_at == index
            withdrawn = not stays and last and outcome is FinalOutcome.withdrawn
            tasks = TASKS.get(stage, [])
            for kind, title, role in tasks:
                dues = [c.due_at for c in clocks if c.name in TASK_CLOCKS.get(kind, ())]
                assignee = mediator if role == "mediator" else None
                batch.tasks.append({
                    "task_id": f"{case_id}:{index + 1}-{stage.value}-{kind}", "case_id": case_id, "kind": kind,
                    "title": title, "assignee_role": role, "assignee_id": assignee, "region_code": region,
                    "due_at": min(dues) if dues else None, "status": "open" if stays else "done",
                    "created_at": at, "completed_at": None if stays else leaves,
                })
                self.report.tasks += 1
                self.report.open_tasks += stays
            for clock in clocks:
                ended = None if stays else leaves
                status = "running" if stays else ("cancelled" if withdrawn else "met")
                horizon = ended or self.now
                fired = [w for w in clock.warnings if w.at <= horizon]
                unfired = [w.at for w in clock.warnings if w.at > horizon]
                clock_breached = clock.due_at <= horizon
                paused = stays and stage is Stage.legal_aid_review and rng.random() < 0.15
                if paused:
                    status = "paused"
                for w in fired:
                    events.append(("clock_warning", w.at, stage.value, {"clock_id": clock.clock_id,
                                                                         "fraction": w.fraction}))
                if clock_breached:
                    breached = True
                    events.append(("clock_breached", clock.due_at, stage.value, {"clock_id": clock.clock_id}))
                if ended is not None:
                    events.append(("clock_met" if status == "met" else "clock_cancelled", ended, stage.value,
                                   {"clock_id": clock.clock_id, "due_at": clock.due_at.isoformat()}))
                row = {
                    "clock_id": f"{case_id}:{clock.clock_id}", "case_id": case_id, "name": clock.name,
                    "title": clock.title, "stage": stage.value, "region_code": region,
                    "assignee_id": mediator if stays and stage in (Stage.mediation, Stage.agreement) else None,
                    "unit": clock.target.unit.value, "target": clock.target.amount, "started_at": clock.started_at,
                    "due_at": clock.due_at, "next_warning_at": min(unfired) if unfired and stays else None,
                    "status": status, "breached": clock_breached,
                    "breached_at": clock.due_at if clock_breached else None,
                    "met_at": ended if status == "met" else None, "ended_at": ended,
                    "warnings_fired": len(fired), "paused_at": horizon - timedelta(days=1) if paused else None,
                    "pause_reason": "awaiting_materials" if paused else None, "policy_version": policy.version,
                }
                batch.clocks.append(row)
                on_clock(row)
                self.report.clocks += 1
            if stays:
                break
            at = leaves
            if last:
                closed_at = at
                events.append(("case_closed", at, Stage.closed.value, {"final_outcome": outcome.value}))
                stage = Stage.closed
        events.sort(key=lambda e: e[1])
        for seq, (type_, moment, stage_value, data) in enumerate(events, start=1):
            batch.events.append({"case_id": case_id, "seq": seq, "type": type_, "at": moment,
                                 "actor_id": None, "actor_role": None, "stage": stage_value, "data": data})
        self.report.events += len(events)
        self.report.cases += 1
        self.report.open_cases += closed_at is None
        phone = self._phone()
        batch.cases.append({
            "case_id": case_id, "workflow_id": f"case-{case_id}", "stage": stage.value,
            "phase": PHASE_OF_STAGE[stage].value, "region_code": region, "channel": rng.choice(
                ("hotline", "hotline", "hotline", "online", "walk_in", "transfer_12345")),
            "category": category.value, "dispute_type": dispute_type.value, "urgency": urgency.value,
            "special_groups": ["migrant_worker"] if dispute_type is DisputeType.labour_wages and rng.random() < 0.5
            else [], "caller_name": self._name(), "caller_phone": phone,
            "caller_phone_digits": phone_digits(phone),
            "description": rng.choice(DESCRIPTIONS[dispute_type]), "mediator_id": mediator, "lawyer_id": lawyer,
            "opened_at": opened, "updated_at": events[-1][1], "closed_at": closed_at,
            "final_outcome": outcome.value if closed_at else None,
            "satisfaction": rng.randint(3, 5) if closed_at and rng.random() < 0.6 else None,
            "policy_version": policy.version, "breached": breached, "event_count": len(events),
        })


# -- Writing ----------------------------------------------------------------------------------------

_TABLES: dict[str, Table] = {"cases": CaseRecord.__table__, "case_tasks": CaseTaskRecord.__table__,
                             "clocks": ClockRecord.__table__, "case_events": CaseEventRecord.__table__}
_FIELDS = {"cases": "cases", "case_tasks": "tasks", "clocks": "clocks", "case_events": "events"}


@dataclass(frozen=True)
class _Job:
    """One slice of the year: its cases are generated alone (their own random stream), so slices run
    in parallel and still give the same data for the same seed."""

    index: int
    count: int
    first: datetime
    last: datetime
    seed: int
    now: datetime
    days: int
    policy_file: Any
    dialect: str  # "sqlite" or "postgresql"
    url: str | None = None  # PostgreSQL: the worker writes its slice itself, on its own connection


@dataclass
class _Chunk:
    rows: dict[str, list[list[Any]]]
    columns: dict[str, list[str]]
    counters: dict[tuple[str, str], int]
    compliance: Any
    report: SeedReport


_GENERATORS: dict[tuple, Generator] = {}
_ENGINES: dict[str, Engine] = {}  # per worker process (made after the fork)


def _columns(table: Table, sample: dict[str, Any]) -> list[str]:
    _checked(table)(sample)
    return [c.name for c in table.c if c.name in sample]


def _converters(table: Table, names: list[str], dialect: str) -> list[Callable[[Any], Any] | None]:
    """How each column's Python value goes to the driver, the way the models' column types send it."""
    def utc_text(value: datetime | None) -> str | None:  # SQLAlchemy's SQLite DateTime format, in UTC
        # (aware: isoformat ends in "+00:00", cut off)
        return None if value is None else value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]

    def day_text(value: Any) -> str | None:  # as SQLAlchemy's SQLite Date stores it
        return None if value is None else value.isoformat()

    def utc(value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    out: list[Callable[[Any], Any] | None] = []
    for name in names:
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):
            out.append(utc_text if dialect == "sqlite" else utc)
        elif isinstance(kind, JSON):
            out.append(json.dumps)  # as SQLAlchemy's JSON type writes it
        elif isinstance(kind, Date) and dialect == "sqlite":
            out.append(day_text)
        elif isinstance(kind, Boolean) and dialect == "sqlite":
            out.append(int)
        else:
            out.append(None)
    return out


class _Tally:
    """The seeded clocks' compliance counts, gathered per (clock, region, Shanghai day, outcome), then
    handed to the projection's own `Counters` once per slice (instead of once per clock: a slice's
    clocks share a few thousand such keys)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, Any, str], int] = {}

    def add_row(self, row: dict[str, Any]) -> None:
        from disputeflow.db.compliance import local_day, outcome  # noqa: PLC0415

        key = (row["name"], row["region_code"], local_day(row["started_at"]),
               outcome(row["status"], bool(row["breached"]), row["due_at"], row["ended_at"] or row["met_at"]))
        self.counts[key] = self.counts.get(key, 0) + 1

    def into(self, counters: Any) -> Any:
        for (name, region, day, which), n in self.counts.items():
            # Noon of that Shanghai day: `Counters` buckets a clock by the Shanghai day it started on.
            counters.add(name, region, datetime.combine(day, dtime(12), tzinfo=SHANGHAI), which, n, started=True)
        return counters


def _rows(table: Table, names: list[str], dialect: str, dicts: list[dict[str, Any]]) -> list[list[Any]]:
    """The rows as lists of driver values in `names` order; only the columns that need it converted."""
    get = operator.itemgetter(*names)
    convert = [(i, f) for i, f in enumerate(_converters(table, names, dialect)) if f is not None]
    out = []
    for d in dicts:
        values = list(get(d))
        for i, f in convert:
            values[i] = f(values[i])
        out.append(values)
    return out


def _generate(job: _Job) -> _Chunk:
    from disputeflow.db.compliance import Counters  # noqa: PLC0415 - kept with the projection's counters
    from disputeflow.domain.policy import DEFAULT_POLICY_PATH  # noqa: PLC0415

    key = (job.policy_file, job.now, job.days)
    gen = _GENERATORS.get(key)
    if gen is None:
        gen = _GENERATORS[key] = Generator(seed=job.seed, now=job.now, days=job.days,
                                           policy=load_policy(job.policy_file or DEFAULT_POLICY_PATH))
    gen.rng = random.Random(f"{job.seed}:{job.index}")
    gen.counters, gen.report = {}, SeedReport()
    tally = _Tally()
    batch = _Batch()
    for _ in range(job.count):
        gen.case(batch, tally.add_row, window=(job.first, job.last))
    rows: dict[str, list[list[Any]]] = {}
    columns: dict[str, list[str]] = {}
    for table_name, attr in _FIELDS.items():
        dicts = getattr(batch, attr)
        if not dicts:
            continue
        names = columns[table_name] = _columns(_TABLES[table_name], dicts[0])
        rows[table_name] = _rows(_TABLES[table_name], names, job.dialect, dicts)
    chunk = _Chunk(rows=rows, columns=columns, counters=dict(gen.counters), compliance=tally.into(Counters()),
                   report=gen.report)
    if job.url is not None and job.index >= 0:
        engine = _ENGINES.get(job.url)
        if engine is None:
            engine = _ENGINES[job.url] = make_engine(job.url)
        with engine.begin() as conn:
            _write(conn, job.dialect, chunk)
        chunk.rows, chunk.columns = {}, {}
    return chunk


def _write(conn: Any, dialect: str, chunk: _Chunk) -> None:
    """Raw driver writes: executemany on SQLite, COPY on PostgreSQL."""
    raw = conn.connection.driver_connection
    for table_name, rows in chunk.rows.items():
        names = chunk.columns[table_name]
        if dialect == "sqlite":
            sql = f"INSERT INTO {table_name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            raw.executemany(sql, rows)
        else:
            with raw.cursor() as cur, cur.copy(f"COPY {table_name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def _write_counters(conn: Any, dialect: str, counters: Any) -> int:
    """`Counters.write`, in bulk: the same rows (`Counters.rows`) and the same upsert (adding to any
    counter already there), sent as one executemany on SQLite and, on PostgreSQL, COPYed into a
    temporary table and upserted from it in one statement."""
    from disputeflow.db.compliance import COUNTS  # noqa: PLC0415

    rows = counters.rows()
    if not rows:
        return 0
    table = ComplianceCount.__table__
    names = _columns(table, rows[0])
    key = [c.name for c in table.primary_key.columns]
    update = ", ".join(f"{n} = {table.name}.{n} + excluded.{n}" for n in COUNTS)
    raw = conn.connection.driver_connection
    values = _rows(table, names, dialect, rows)
    if dialect == "sqlite":
        raw.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {update}", values)
        return len(rows)
    with raw.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE seed_counts (LIKE {table.name}) ON COMMIT DROP")
        with cur.copy(f"COPY seed_counts ({', '.join(names)}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(names)} FROM seed_counts "
                    f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {update}")
    return len(rows)


# The seeding connection's own settings while it fills an empty SQLite file, in one transaction:
# no sync to disk (a crash mid-seed leaves a file to delete and seed again, as an interrupted seed
# does anyway) and a page cache large enough for the tables' indexes (256 MiB). Put back before the
# connection goes back to the pool.
_SQLITE_BULK = {"synchronous": ("OFF", "NORMAL"), "cache_size": ("-262144", "-2000")}


def _sqlite_bulk_writer(engine: Engine) -> Any:
    """The connection, in its transaction, with the loaded tables' own secondary indexes dropped:
    `_sqlite_bulk_indexes` creates them again, from their own SQL, before the commit (SQLite's DDL is
    transactional: a seed that fails leaves them as they were). One sort per index instead of a
    B-tree insert per row and index."""
    conn = engine.connect().execution_options(sqlite_begin="IMMEDIATE")
    raw = conn.connection.driver_connection  # autocommit (engine.py): the PRAGMAs run outside a transaction
    for name, (value, _) in _SQLITE_BULK.items():
        raw.execute(f"PRAGMA {name}={value}")
    conn.begin()
    tables = ", ".join(f"'{name}'" for name in _TABLES)
    conn.info["seed_indexes"] = raw.execute(  # not those of UNIQUE or PRIMARY KEY constraints (no SQL)
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({tables}) AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in conn.info["seed_indexes"]:
        raw.execute(f'DROP INDEX "{name}"')
    # The text search index's triggers likewise (a row of the index per case inserted): the index is
    # built in one statement at the end (`text_index.rebuild_sqlite`; the read model was empty).
    conn.info["seed_triggers"] = raw.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'cases' AND name LIKE 'case_text_%'"
    ).fetchall()
    for name, _ in conn.info["seed_triggers"]:
        raw.execute(f'DROP TRIGGER "{name}"')
    return conn


def _sqlite_bulk_indexes(conn: Any) -> None:
    raw = conn.connection.driver_connection
    for _, sql in conn.info.pop("seed_indexes"):
        raw.execute(sql)
    triggers = conn.info.pop("seed_triggers")
    if triggers:
        text_index.rebuild_sqlite(conn)
    for _, sql in triggers:
        raw.execute(sql)


def _sqlite_bulk_done(conn: Any) -> None:
    conn.info.pop("seed_indexes", None)
    conn.info.pop("seed_triggers", None)
    try:
        if conn.in_transaction():
            conn.rollback()
        raw = conn.connection.driver_connection
        for name, (_, value) in _SQLITE_BULK.items():
            raw.execute(f"PRAGMA {name}={value}")
    finally:
        conn.close()


def seed(engine: Engine, *, cases: int, seed: int = 12348, now: datetime | None = None, days: int = 365,
         policy_file: Any = None, batch_size: int = 5000, workers: int | None = None,
         progress: Callable[[int], None] | None = None) -> SeedReport:
    """Generate `cases` cases opened over the `days` before `now` into an empty read model.

    The year is cut into slices of whole days, about `batch_size` cases each, generated by `workers`
    processes (default: 2 when there are at least 20,000 cases, else none), one slice per transaction:
    written by this process on SQLite (one writer), by the workers themselves on PostgreSQL.
    """
    from disputeflow.db.compliance import Counters  # noqa: PLC0415

    started = time.monotonic()
    moment = (now or datetime.now(UTC)).replace(microsecond=0).astimezone(UTC)
    first = moment - timedelta(days=days)
    dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(CaseRecord)).scalar_one():
            raise SeedError("the read model already holds cases: seed an empty database")
    # Slices of whole Shanghai days (case numbers count per region and day), cases in proportion.
    slices = max(1, min(days, -(-cases // batch_size)))
    first_day = first.astimezone(SHANGHAI).date()
    bounds = [first] + [datetime.combine(first_day + timedelta(days=days * k // slices), dtime(0), tzinfo=SHANGHAI)
                        for k in range(1, slices)] + [moment]
    span = (moment - first).total_seconds()
    cuts = [round(cases * (b - first).total_seconds() / span) for b in bounds]
    jobs = [_Job(index=k, count=cuts[k + 1] - cuts[k], first=bounds[k], last=bounds[k + 1], seed=seed, now=moment,
                 days=days, policy_file=policy_file, dialect=dialect,
                 url=None if dialect == "sqlite" else engine.url.render_as_string(hide_password=False))
            for k in range(slices)]
    workers = (2 if cases >= 20_000 else 0) if workers is None else workers
    _generate(_Job(index=-1, count=min(cases, 200), first=first, last=moment, seed=seed, now=moment, days=days,
                   policy_file=policy_file, dialect=dialect))  # loads the policy and calendars once, before forking
    report, counters, numbers = SeedReport(), Counters(), {}
    engine.dispose()  # no pooled connection shared with the forked workers
    pool = multiprocessing.get_context("fork").Pool(workers) if workers else None
    writer = None
    try:
        chunks = pool.imap(_generate, jobs) if pool else map(_generate, jobs)
        if dialect == "sqlite":  # one writer, this process, on one connection set up for a bulk load
            writer = _sqlite_bulk_writer(engine)
        done = 0
        for chunk in chunks:
            if chunk.rows:  # SQLite: one writer, this process; PostgreSQL: written by the worker
                _write(writer, dialect, chunk)
            counters.merge(chunk.compliance)
            numbers.update(chunk.counters)
            for name in ("cases", "open_cases", "tasks", "open_tasks", "clocks", "events"):
                setattr(report, name, getattr(report, name) + getattr(chunk.report, name))
            done += report.cases - done
            if progress:
                progress(done)
        if writer is not None:
            _sqlite_bulk_indexes(writer)
            writer.commit()
    finally:
        if writer is not None:
            _sqlite_bulk_done(writer)
        if pool:
            pool.close()
            pool.join()
        for own in _ENGINES.values():  # this process's, when it wrote slices itself (workers=0)
            own.dispose()
        _ENGINES.clear()
    with engine.begin() as conn:
        report.compliance_rows = _write_counters(conn, dialect, counters)
        have = set(conn.execute(select(Mediator.id)).scalars())
        names = random.Random(seed)
        mediators = [
            {"id": m, "name": names.choice(SURNAMES) + names.choice(GIVEN) + names.choice(GIVEN),
             "region_code": region, "expertise": [t.value for t in DisputeType], "senior": m.endswith("-01"),
             "active": True}
            for region in REGIONS for m in (f"med-{region}-{i:02d}" for i in range(1, MEDIATORS_PER_REGION + 1))
            if m not in have
        ]
        if mediators:
            conn.execute(Mediator.__table__.insert(), mediators)
        report.mediators = len(mediators)
        existing = {tuple(row) for row in conn.execute(select(CaseNumberCounter.region_code, CaseNumberCounter.day))}
        fresh = [{"region_code": r, "day": d, "last": n} for (r, d), n in numbers.items() if (r, d) not in existing]
        if fresh:
            conn.execute(CaseNumberCounter.__table__.insert(), fresh)
        if dialect == "sqlite":  # statistics for the planner, as after any bulk load
            conn.exec_driver_sql("ANALYZE")
    if dialect != "sqlite":  # statistics, and the visibility map autovacuum would set in time
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    report.seconds = time.monotonic() - started
    return report
