"""Supervisors' views over the read model: missed deadlines, deadlines at risk, compliance figures.

Each covers the supervisor's region (or a narrower `region` inside it). The figures themselves are
computed by `disputeflow.db.reports`; these routes only translate HTTP.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Literal

import threading
import uuid
from pathlib import Path as FilePath

from fastapi import Path, Query, Response
from pydantic import BaseModel
from pydantic_core import to_json
from sqlmodel import Session

from api.auth import REGION_PATTERN, ActorDep, router_for, scoped_region
from api.deps import Day, SessionDep, SettingsDep
from disputeflow.settings import Settings
from api.errors import ApiError, TransitionRefused, error_responses
from disputeflow.db import reports
from disputeflow.db.reports import ClockRow, ComplianceRow
from disputeflow.domain.actions import Actor
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.enums import Role, Stage
from disputeflow.domain.text import single_line
from disputeflow.forecast import Forecast, ForecastSpec, forecast

router = router_for(Role.supervisor, prefix="/supervision", tags=["supervisors"])

MAX_PAGE = 500


class EmptyRange(ApiError):
    """Each day is a valid day, but together they name no range: a refusal with its reason."""

    status_code = 409


RANGE_REFUSED = error_responses(409, e409="`end` is before `start`: the range holds no day")
RegionQuery = Annotated[str | None, Query(pattern=REGION_PATTERN, examples=["370102"],
                                          description="A region inside yours (2, 4 or 6 digits); default: yours")]
# One line of clean text (disputeflow.domain.text): a NUL would reach PostgreSQL, which refuses it (a 500).
AssigneeQuery = Annotated[single_line(max_length=64) | None, Query(description="Mediator id")]
ClockQuery = Annotated[single_line(max_length=64) | None,
                       Query(description="Clock name", examples=["legal_aid_decision"])]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE)]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000)]
DayQuery = Annotated[Day | None, Query()]


class ClockPage(BaseModel):
    items: list[ClockRow]
    limit: int
    offset: int


class Compliance(BaseModel):
    region: str
    start: date
    end: date
    period: Literal["day", "week", "month"]
    rows: list[ComplianceRow]


@router.get("/breaches", response_model=ClockPage, summary="Missed deadlines, longest overdue first",
            description="Clocks whose breach has fired; open ones only unless `include_ended`.")
def breaches(
    actor: ActorDep, session: SessionDep, region: RegionQuery = None, stage: Stage | None = None,
    assignee: AssigneeQuery = None, clock: ClockQuery = None, include_ended: bool = False,
    limit: LimitQuery = 100, offset: OffsetQuery = 0,
) -> ClockPage:
    rows = reports.breached_clocks(
        session, region_prefix=scoped_region(actor, region), stage=stage.value if stage else None,
        assignee_id=assignee, clock=clock, include_ended=include_ended, limit=limit, offset=offset)
    return ClockPage(items=rows, limit=limit, offset=offset)


@router.get("/at-risk", response_model=ClockPage, summary="Deadlines at risk, soonest due first",
            description="Open clocks not yet breached that have fired a warning or fall due within `within_hours`.")
def at_risk(
    actor: ActorDep, session: SessionDep,
    within_hours: Annotated[float, Query(ge=0, le=24 * 92, allow_inf_nan=False)] = 24,
    region: RegionQuery = None, stage: Stage | None = None, assignee: AssigneeQuery = None, clock: ClockQuery = None,
    limit: LimitQuery = 100, offset: OffsetQuery = 0,
) -> ClockPage:
    rows = reports.at_risk_clocks(
        session, now=datetime.now(timezone.utc), within=timedelta(hours=within_hours),
        region_prefix=scoped_region(actor, region), stage=stage.value if stage else None, assignee_id=assignee,
        clock=clock, limit=limit, offset=offset)
    return ClockPage(items=rows, limit=limit, offset=offset)


def _compliance(actor: Actor, session: Session, start: date | None, end: date | None,
                period: Literal["day", "week", "month"], region: str | None,
                group_by: int) -> tuple[str, date, date, list[reports.ComplianceTuple]]:
    today = datetime.now(SHANGHAI).date()
    end = end or today
    start = start or end.replace(day=1)
    if end < start:
        raise EmptyRange(f"end ({end}) is before start ({start}): the range holds no day")
    own = scoped_region(actor, region)
    rows = reports.compliance_table(session, start=start, end=end, period=period, region_prefix=own,
                                    group_by_region_level=group_by)  # type: ignore[arg-type]  # 2, 4 or 6 (checked)
    return own, start, end, rows


_COMPLIANCE_HELP = (
    "Per clock, region and period of the clocks' start (Asia/Shanghai): how many started, were met on time, "
    "late, are breached and open, on time and open, cancelled (before or after a breach), and the compliance "
    "rate; a breach still counts when the case is withdrawn afterwards. Default range: this month so far."
)
PeriodQuery = Annotated[Literal["day", "week", "month"], Query()]
GroupQuery = Annotated[int, Query(ge=2, le=6, multiple_of=2,
                                  description="Group regions by 2 (province), 4 (city) or 6 (county) digits")]


@router.get("/compliance", response_model=Compliance, summary="Compliance figures", description=_COMPLIANCE_HELP,
            responses=RANGE_REFUSED)
def compliance(
    actor: ActorDep, session: SessionDep, start: DayQuery = None, end: DayQuery = None,
    period: PeriodQuery = "month", region: RegionQuery = None, group_by: GroupQuery = 6,
) -> Response:
    # A year by county is thousands of rows: encoded from plain rows by pydantic's own encoder, with
    # no model per row and no validation by the framework. The same JSON as the declared model
    # `Compliance` gives (tests/test_reports.py compares them), in a fraction of the time.
    own, first, last, rows = _compliance(actor, session, start, end, period, region, group_by)
    head = to_json({"region": own, "start": first, "end": last, "period": period, "rows": []})
    assert head.endswith(b"[]}")
    return Response(head[:-3] + b"[" + _compliance_rows_json(rows) + b"]}", media_type="application/json")


# One row of `Compliance.rows` as pydantic writes it: the fields in `COMPLIANCE_FIELDS` order, compact.
_ROW_JSON = "{" + ",".join(
    to_json(name).decode() + ":" + ("%s" if name in ("clock", "region_code", "period", "compliance_rate") else "%d")
    for name in reports.COMPLIANCE_FIELDS) + "}"


def _compliance_rows_json(rows: list[reports.ComplianceTuple]) -> bytes:
    """The rows' JSON objects, comma-separated: each text and float as pydantic's encoder writes it
    (the few distinct texts encoded once each, every rate in one call), the counts as integers."""
    if not rows:
        return b""
    # The rates in one call: a JSON array of numbers and nulls, none of which holds a comma.
    rates = to_json([row[10] for row in rows]).decode()[1:-1].split(",")
    texts: dict[str, str] = {}

    def text(value: str) -> str:
        encoded = texts.get(value)
        if encoded is None:
            encoded = texts[value] = to_json(value).decode()
        return encoded

    template = _ROW_JSON
    return ",".join([
        template % (text(clock), text(region_code), text(label), started, on_time, late, breached_open,
                    open_on_time, cancelled, cancelled_late, rate)
        for (clock, region_code, label, started, on_time, late, breached_open, open_on_time, cancelled,
             cancelled_late, _), rate in zip(rows, rates, strict=True)
    ]).encode()


@router.get(
    "/compliance.csv", summary="Compliance figures as CSV", description=_COMPLIANCE_HELP,
    response_class=Response, responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV"}, **RANGE_REFUSED},
)
def compliance_csv(
    actor: ActorDep, session: SessionDep, start: DayQuery = None, end: DayQuery = None,
    period: PeriodQuery = "month", region: RegionQuery = None, group_by: GroupQuery = 6,
) -> Response:
    own, first, last, rows = _compliance(actor, session, start, end, period, region, group_by)
    filename = f"compliance-{own}-{first:%Y%m%d}-{last:%Y%m%d}.csv"
    return Response(reports.compliance_csv(rows).encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# -- Staffing forecasts ------------------------------------------------------------------------------


class ForecastJob(BaseModel):
    job_id: str
    status: Literal["running", "done", "failed"]
    progress: float  # 0..1, simulated days done
    cases: int  # cases it simulates, about
    started_at: datetime
    detail: str | None = None
    result: Forecast | None = None


class _Jobs:
    """Forecasts of this API process, run one at a time in a thread (each starts its own test
    server and takes both cores for seconds to minutes). Kept in memory: a restart forgets them."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, ForecastJob]] = {}  # job id -> (owner, job)
        self.lock = threading.Lock()

    def busy(self) -> bool:
        return any(job.status == "running" for _, job in self.jobs.values())


JOBS = _Jobs()


class ForecastNotFound(ApiError):
    """Unknown, or started by someone else: the two answer alike."""

    status_code = 404


def _run_forecast(job: ForecastJob, spec: ForecastSpec, policy_file: FilePath) -> None:
    def progress(fraction: float, what: str) -> None:
        job.progress = round(fraction, 3)

    try:
        job.result = forecast(spec, policy_file=policy_file, progress=progress)
        job.status, job.progress = "done", 1.0
    except Exception as exc:  # noqa: BLE001 - reported on the job
        job.status, job.detail = "failed", f"{type(exc).__name__}: {exc}"[:500]


@router.post("/forecast", response_model=ForecastJob, status_code=202, summary="Start a staffing forecast",
             description=(
                 "Runs the real case workflow over simulated weeks, on a private Temporal test server (never "
                 "the real cases or namespace), with simulated staff acting at the given capacity, and reports "
                 "per clock the forecast compliance (with its spread over runs), lateness, backlog per week and "
                 "the staffing level reaching the target. **202** with a job: poll `GET /supervision/forecast/"
                 "{job_id}` for its progress and result. **409**, with its reason: while another forecast runs (one at "
                 "a time), when it would simulate more cases than this API allows (`DISPUTEFLOW_FORECAST_MAX_CASES`, "
                 "all levels and runs together), or when a mix of shares does not add up to 1. The region must be "
                 "inside yours."),
             responses=error_responses(409, 413))
def start_forecast(spec: ForecastSpec, actor: ActorDep, settings: SettingsDep) -> ForecastJob:
    return start_forecast_job(spec, actor, settings)


def start_forecast_job(spec: ForecastSpec, actor: Actor, settings: Settings) -> ForecastJob:
    """A forecast job of `actor`'s (the route's and the console's): 403 outside their region; 409
    while another runs, when too large for this API, or when its shares do not add up."""
    scoped_region(actor, spec.region_code)  # 403 outside the supervisor's region
    if problems := spec.problems():
        raise TransitionRefused("; ".join(problems))
    cases = round(spec.cases_per_run() * spec.runs * len(spec.levels()))
    if cases > settings.forecast_max_cases:
        raise TransitionRefused(f"this forecast would simulate about {cases} cases; this API runs at most "
                                f"{settings.forecast_max_cases} (fewer runs, levels, weeks or arrivals)")
    with JOBS.lock:
        if JOBS.busy():
            raise TransitionRefused("a forecast is already running on this API; try again when it is done")
        job = ForecastJob(job_id=uuid.uuid4().hex, status="running", progress=0.0, cases=cases,
                          started_at=datetime.now(timezone.utc))
        JOBS.jobs[job.job_id] = (actor.user_id, job)
    threading.Thread(target=_run_forecast, args=(job, spec, settings.policy_file), daemon=True,
                     name=f"forecast-{job.job_id[:8]}").start()
    return job


@router.get("/forecast/{job_id}", response_model=ForecastJob, summary="A staffing forecast: progress and result",
            responses=error_responses(404))
def forecast_job(job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], actor: ActorDep) -> ForecastJob:
    return forecast_job_of(job_id, actor)


def forecast_job_of(job_id: str, actor: Actor) -> ForecastJob:
    """`actor`'s own forecast job; 404 for anyone else's, as for an unknown one."""
    found = JOBS.jobs.get(job_id)
    if found is None or found[0] != actor.user_id:
        raise ForecastNotFound(f"forecast {job_id} not found")
    return found[1]
