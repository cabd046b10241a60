"""What a forecast answers: per clock and staffing level, compliance (with its spread over runs),
lateness, backlog per week, and the staffing level at which each clock reaches the target.

Clocks are classified as the read model's compliance report does (`disputeflow.db.reports`):
compliance = met on time / (met on time + met late + breached and open + cancelled after a breach);
a clock still open and not yet due at the end of the period, or cancelled before its due time,
is not rated.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

from pydantic import BaseModel

from disputeflow.domain.clocks import Clock, ClockStatus
from disputeflow.domain.policy import BreachAction
from disputeflow.forecast.simulation import Scenario, SimResult
from disputeflow.forecast.spec import ForecastSpec


class ClockFigures(BaseModel):
    started: int = 0
    met_on_time: int = 0
    met_late: int = 0
    breached_open: int = 0
    open_on_time: int = 0
    cancelled: int = 0
    cancelled_after_breach: int = 0
    late_hours: list[float] = []

    @property
    def rated(self) -> int:
        return self.met_on_time + self.met_late + self.breached_open + self.cancelled_after_breach

    @property
    def compliance(self) -> float | None:
        return self.met_on_time / self.rated if self.rated else None


def classify(clocks: Iterable[Clock], end: datetime) -> dict[str, ClockFigures]:
    out: dict[str, ClockFigures] = {}
    for clock in clocks:
        f = out.setdefault(clock.name, ClockFigures())
        f.started += 1
        late = clock.breached or (clock.open and clock.due_at <= end) or (
            clock.status is ClockStatus.met and clock.ended_at is not None and clock.ended_at > clock.due_at)
        if clock.status is ClockStatus.met:
            if late:
                f.met_late += 1
                f.late_hours.append(max(0.0, ((clock.ended_at or end) - clock.due_at).total_seconds() / 3600))
            else:
                f.met_on_time += 1
        elif clock.status is ClockStatus.cancelled:
            if clock.breached:
                f.cancelled_after_breach += 1
                f.late_hours.append(max(0.0, ((clock.ended_at or end) - clock.due_at).total_seconds() / 3600))
            else:
                f.cancelled += 1
        elif late:
            f.breached_open += 1
            f.late_hours.append(max(0.0, (end - clock.due_at).total_seconds() / 3600))
        else:
            f.open_on_time += 1
    return out


def scenario_clocks(s: Scenario) -> list[Clock]:
    return [c for case in s.cases if case.started and not case.lost
            for c in (case.final.clocks if case.final is not None else case.clocks)]


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]


class ClockForecast(BaseModel):
    clock: str
    compliance: float | None  # mean over runs
    compliance_low: float | None  # the lowest run
    compliance_high: float | None  # the highest run
    rated: float  # clocks rated, a run on average
    started: float
    late: float  # late (met late, breached open, cancelled after breach), a run on average
    mean_late_hours: float | None  # over the late clocks of all runs
    p90_late_hours: float | None


class WeekBacklog(BaseModel):
    week: int  # 0: the start; n: after n weeks
    open_cases: float
    stages: dict[str, float] = {}  # open cases by stage
    open_clocks: dict[str, float]
    overdue_clocks: dict[str, float]


class LevelForecast(BaseModel):
    level: int  # people of the swept role
    cases: float  # a run on average
    clocks: list[ClockForecast]
    backlog: list[WeekBacklog]


# The codes of a forecast's notes (`NoteCode.code`): the console says each as `forecast.note.<code>`.
NOTE_CODES = frozenset({"runs", "rated", "ticks", "windows", "shifted_later", "shifted_earlier", "lost"})


class NoteCode(BaseModel):
    """A note of `Forecast.notes` by its stable code and its values (a clock's name, a number of
    days...), in the same order as the English words: so that the console can say it in its own
    language, as it does a refusal (the API and the CLI say the English)."""

    code: str
    params: dict[str, Any] = {}


class Forecast(BaseModel):
    spec: ForecastSpec
    role: str
    target: float
    levels: list[LevelForecast]
    reaches_target: dict[str, int | None]  # clock -> lowest level reaching the target (None: none did)
    seconds: float
    cases_simulated: int
    actions: int
    refused: int
    lost: int
    timings: dict[str, float]
    notes: list[str]
    note_codes: list[NoteCode] = []  # `notes` by code, one for one


def build(result: SimResult) -> Forecast:
    spec = result.spec
    end = result.period_end + timedelta(days=result.offset_days)
    levels: list[LevelForecast] = []
    # Windows that lapse by design (a refusal's review window) are not deadlines staff can meet.
    windows = {c.name for s in result.scenarios for case in s.cases for c in case.clocks
               if BreachAction.lapse in c.on_breach}
    by_level: dict[int, list[Scenario]] = {}
    for s in result.scenarios:
        by_level.setdefault(s.level, []).append(s)
    for level, scenarios in sorted(by_level.items()):
        per_run = [classify(scenario_clocks(s), end) for s in scenarios]
        names = sorted({n for run in per_run for n in run})
        rows = []
        for name in names:
            figures = [run.get(name, ClockFigures()) for run in per_run]
            rates = [f.compliance for f in figures if f.compliance is not None]
            late = [h for f in figures for h in f.late_hours]
            rows.append(ClockForecast(
                clock=name, compliance=mean(rates) if rates else None, compliance_low=min(rates, default=None),
                compliance_high=max(rates, default=None), rated=mean(f.rated for f in figures),
                started=mean(f.started for f in figures), late=mean(len(f.late_hours) for f in figures),
                mean_late_hours=mean(late) if late else None, p90_late_hours=_p(late, 0.9)))
        weeks = []
        for w in range(len(scenarios[0].weekly)):
            snaps = [s.weekly[w] for s in scenarios if w < len(s.weekly)]
            clock_names = sorted({n for snap in snaps for n in snap["clocks"]})
            stage_names = sorted({n for snap in snaps for n in snap["stages"]})
            weeks.append(WeekBacklog(
                week=snaps[0]["week"], open_cases=mean(x["open_cases"] for x in snaps),
                stages={n: mean(x["stages"].get(n, 0) for x in snaps) for n in stage_names},
                open_clocks={n: mean(x["clocks"].get(n, {}).get("open", 0) for x in snaps) for n in clock_names},
                overdue_clocks={n: mean(x["clocks"].get(n, {}).get("overdue", 0) for x in snaps) for n in clock_names}))
        levels.append(LevelForecast(level=level, cases=mean(sum(1 for c in s.cases if c.started) for s in scenarios),
                                    clocks=rows, backlog=weeks))
    reaches: dict[str, int | None] = {}
    for name in sorted({r.clock for lv in levels for r in lv.clocks} - windows):
        reaches[name] = next((lv.level for lv in levels for r in lv.clocks
                              if r.clock == name and r.compliance is not None and r.compliance >= spec.target), None)
    coded: list[tuple[str, dict[str, Any], str]] = [
        ("runs", {"runs": spec.runs}, f"{spec.runs} run(s) per level; run r draws the same arrivals at every level"),
        ("rated", {}, "clocks rated as in /supervision/compliance; a clock not yet due at the end is not rated"),
        ("ticks", {}, "simulated people act at fixed times of each working day (office hours), soonest due first"),
    ]
    if windows:
        coded.append(("windows", {"clock": sorted(windows)},
                      f"{', '.join(sorted(windows))}: a window that lapses by design, not a deadline; "
                      "no staffing level is sought for it"))
    if result.offset_days:
        later = result.offset_days > 0
        coded.append(("shifted_later" if later else "shifted_earlier", {"days": abs(result.offset_days)},
                      f"simulated {abs(result.offset_days)} days {'later' if later else 'earlier'} "
                      "on the period's own calendar, shifted by whole weeks (the test server starts at today and "
                      "its clock only moves forward); every working-day count is the period's"))
    if result.lost:
        coded.append(("lost", {"n": result.lost},
                      f"{result.lost} case(s) left out: an action never answered on the test server"))
    notes = [words for _, _, words in coded]
    note_codes = [NoteCode(code=code, params=params) for code, params, _ in coded]
    return Forecast(spec=spec, role=spec.swept_role(), target=spec.target, levels=levels, reaches_target=reaches,
                    seconds=result.seconds, cases_simulated=result.cases, actions=result.actions,
                    refused=result.refused, lost=result.lost, timings=result.timings, notes=notes,
                    note_codes=note_codes)


def text(forecast: Forecast, clocks: list[str] | None = None) -> str:
    """A plain-text report with a chart of compliance against staffing level."""
    lines = []
    spec = forecast.spec
    lines.append(f"Forecast for region {spec.region_code}, {spec.weeks} weeks from {spec.start}, "
                 f"{forecast.role} levels {[lv.level for lv in forecast.levels]}, target {forecast.target:.0%}")
    lines.append(f"{forecast.cases_simulated} cases simulated, {forecast.actions} actions, "
                 f"in {forecast.seconds:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in forecast.timings.items()) + ")")
    names = clocks or sorted({r.clock for lv in forecast.levels for r in lv.clocks})
    for lv in forecast.levels:
        lines.append(f"\n{forecast.role}s: {lv.level}  (cases a run: {lv.cases:.0f})")
        lines.append(f"  {'clock':30} {'compliance':>10} {'runs low-high':>15} {'rated':>6} {'late':>6} "
                     f"{'mean late h':>11} {'p90 late h':>10}")
        for r in lv.clocks:
            if r.clock not in names:
                continue
            lines.append(f"  {r.clock:30} {_pct(r.compliance):>10} {_pct(r.compliance_low) + '-' + _pct(r.compliance_high):>15} "
                         f"{r.rated:6.1f} {r.late:6.1f} {_num(r.mean_late_hours):>11} {_num(r.p90_late_hours):>10}")
        last = lv.backlog[-1] if lv.backlog else None
        if last:
            lines.append("  backlog (open cases) by week: " + ", ".join(f"{b.open_cases:.0f}" for b in lv.backlog))
            lines.append("  of them in mediation: " + ", ".join(f"{b.stages.get('mediation', 0):.0f}" for b in lv.backlog))
            lines.append("  mediation deadlines overdue: " + ", ".join(
                f"{b.overdue_clocks.get('mediation_conclusion', 0):.0f}" for b in lv.backlog))
    lines.append("\nCompliance against staffing level (each # is 5%):")
    for name in names:
        lines.append(f"  {name}")
        for lv in forecast.levels:
            r = next((x for x in lv.clocks if x.clock == name), None)
            rate = r.compliance if r else None
            bar = "#" * round((rate or 0) * 20)
            mark = " <- target" if forecast.reaches_target.get(name) == lv.level else ""
            lines.append(f"    {lv.level:3d} | {bar:20} {_pct(rate)}{mark}")
    lines.append("\nLevel reaching the target: " + ", ".join(
        f"{k}: {v if v is not None else 'none of these'}" for k, v in forecast.reaches_target.items() if k in names))
    lines += [f"note: {n}" for n in forecast.notes]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
