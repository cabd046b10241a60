"""Back-test: forecast a past period from its real arrivals, and compare with what the read model shows.

The period's cases of the region, as they arrived (instant, category, dispute type, urgency), are
fed to the forecast instead of drawn rates, with the outcome mix the period's events show (unless
the spec gives one); its compliance per clock is set beside the read model's
own figures for the clocks started in the period (`reports.compliance`, evaluated as the read model
stands, so run it on a read model whose last change is the end of the period).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session

from disputeflow.db import reports
from disputeflow.forecast import forecast
from disputeflow.forecast.profile import OutcomeEvidence, exact_arrivals, outcome_mix, weekly_rates
from disputeflow.forecast.report import Forecast
from disputeflow.forecast.spec import ForecastSpec


class BacktestRow(BaseModel):
    clock: str
    actual: float | None
    actual_rated: int
    forecast: float | None
    forecast_low: float | None
    forecast_high: float | None
    forecast_rated: float
    error: float | None  # forecast - actual, in shares (0.05 = 5 percentage points)


class Backtest(BaseModel):
    region_code: str
    start: str
    weeks: int
    cases: int
    rows: list[BacktestRow]
    mean_absolute_error: float | None  # weighted by the actual clocks rated
    outcomes: list[OutcomeEvidence]  # the outcome mix used, and which shares the period's events set
    forecast: Forecast


def backtest(engine: Engine, spec: dict[str, Any], *, policy_file: Path, **kwargs: Any) -> Backtest:
    """`spec`: a forecast without arrivals (region_code, start, weeks, staff, runs...)."""
    base = ForecastSpec.model_validate(spec | {"arrivals": [{"category": "dispute", "per_week": 0}]})
    with Session(engine) as session:
        arrivals = exact_arrivals(session, base.region_code, start=base.start, weeks=base.weeks)
        rates = weekly_rates(session, base.region_code, weeks=base.weeks,
                             until=base.start + timedelta(weeks=base.weeks) - timedelta(days=1))
        last_day = base.start + timedelta(weeks=base.weeks) - timedelta(days=1)
        if "outcomes" in spec:
            outcomes, evidence = base.outcomes, []
        else:
            outcomes, evidence = outcome_mix(session, base.region_code, weeks=base.weeks, until=last_day)
        actual = reports.compliance(session, start=base.start, end=base.start + timedelta(weeks=base.weeks, days=-1),
                                    period="month", region_prefix=base.region_code)
    full = ForecastSpec.model_validate(base.model_dump(mode="json") | {
        "exact_arrivals": arrivals, "arrivals": [a.model_dump(mode="json") for a in rates or base.arrivals],
        "outcomes": outcomes.model_dump(mode="json")})
    result = forecast(full, policy_file=policy_file, **kwargs)
    totals: dict[str, list[int]] = {}
    for row in actual:
        t = totals.setdefault(row.clock, [0, 0])
        t[0] += row.met_on_time
        t[1] += row.met_on_time + row.met_late + row.breached_open + row.cancelled_after_breach
    (level,) = result.levels
    rows = []
    for name in sorted(set(totals) | {r.clock for r in level.clocks}):
        on_time, rated = totals.get(name, [0, 0])
        f = next((r for r in level.clocks if r.clock == name), None)
        act = on_time / rated if rated else None
        fc = f.compliance if f else None
        rows.append(BacktestRow(clock=name, actual=act, actual_rated=rated, forecast=fc,
                                forecast_low=f.compliance_low if f else None,
                                forecast_high=f.compliance_high if f else None,
                                forecast_rated=f.rated if f else 0,
                                error=(fc - act) if fc is not None and act is not None else None))
    weighted = [(abs(r.error), r.actual_rated) for r in rows if r.error is not None and r.actual_rated]
    mae = sum(e * w for e, w in weighted) / sum(w for _, w in weighted) if weighted else None
    return Backtest(region_code=base.region_code, start=base.start.isoformat(), weeks=base.weeks, cases=len(arrivals),
                    rows=rows, mean_absolute_error=mae, outcomes=evidence, forecast=result)
