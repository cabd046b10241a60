"""Auditors (and supervisors, for their region): what happened in a case and why; read-only.

The timeline, the raw history and the replay come from Temporal's history of the case
(`disputeflow.history`); the audit entries and the chain's verification from the hash-chained
audit log (`disputeflow.db.audit`). Nothing here changes anything: the audit log has no route that
writes, and the database refuses UPDATE and DELETE on it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Path, Query, Request, Response
from sqlmodel import Session
from pydantic import BaseModel, Field

from api import cases
from api.auth import ActorDep, allow, router_for
from api.deps import CaseIdPath, EngineDep, NowDep, SessionDep, TemporalDep
from api.errors import ApiError, error_responses
from api.jobs import Job, jobs_of
from api.read_log import ReadLogDep
from api.schemas import AuditEntryPublic
from disputeflow import history
from disputeflow.db import audit, reads
from disputeflow.domain.enums import Role

router = router_for(Role.auditor, Role.supervisor, tags=["auditors"], responses=error_responses(404))
FROM_HISTORY = error_responses(410)  # the routes that read every run of the case's history


class RunNotFound(ApiError):
    """A `run` past the case's last run: nothing there, like an unknown case."""

    status_code = 404


class Timeline(BaseModel):
    case_id: str
    runs: int = Field(description="Workflow runs (a long case continues as new)")
    entries: list[history.TimelineEntry]


class ReplayVerdict(BaseModel):
    case_id: str
    ok: bool = Field(description="Every run replays under today's code")
    results: list[history.ReplayResult]


ReadKind = Literal["caller", "timeline", "history", "payloads"]


class CallerDataReadPublic(BaseModel):
    """Someone was served the case's caller data unmasked, or read its history."""

    case_id: str
    user_id: str
    role: Role
    region_code: str = Field(description="The reader's region (their token's)")
    kind: ReadKind = Field(default="caller", description="caller: name and phone (or identity card number) "
                           "unmasked; timeline: the timeline; history: the raw history downloaded; payloads: "
                           "payloads decrypted through the codec endpoint")
    fields: list[str] = Field(examples=[["name", "phone"]],
                              description="For kind caller, the fields shown; otherwise what was read "
                                          "(`2 run(s)`, `run 1`, `3 payloads`)")
    route: str = Field(examples=["GET /cases/{case_id}"])
    read_at: datetime


class CallerDataReadPage(BaseModel):
    items: list[CallerDataReadPublic]
    total: int
    limit: int
    offset: int


class CaseAudit(BaseModel):
    case_id: str
    entries: list[AuditEntryPublic]


@router.get("/cases/{case_id}/timeline", operation_id="case_timeline", response_model=Timeline,
            summary="What happened, from Temporal's history",
            description="Who asked for what and whether it was done, when each clock's timer was set and fired, "
                        "every domain event, read from the case's workflow history (all runs).",
            responses=FROM_HISTORY)
async def case_timeline(case_id: CaseIdPath, actor: ActorDep, session: SessionDep, temporal: TemporalDep,
                        read_log: ReadLogDep) -> Timeline:
    await cases.locate(case_id, actor, session=session, temporal=temporal)
    runs = await history.fetch_case_history(await temporal.client(), case_id)
    answer = Timeline(case_id=case_id, runs=len(runs), entries=history.timeline(runs))
    await read_log.aaccess([case_id], kind="timeline", detail=f"{len(runs)} run(s)")  # before it leaves
    return answer


@router.get(
    "/cases/{case_id}/history", operation_id="case_history",
    summary="The raw workflow history (JSON export)",
    description="One run's history in the format of `temporal workflow show --output json` (loads with "
                "`WorkflowHistory.from_json` and in the Temporal UI), payloads encrypted as Temporal stores them "
                "(the Web UI reads them through `/codec/decode`). Default: the latest run; `X-Case-Runs` "
                "says how many there are.",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "The history document"},
               **error_responses(404, 410, e404="No such case (or not one you may see), or no such run of it")},
)
async def case_history(
    case_id: CaseIdPath, actor: ActorDep, session: SessionDep, temporal: TemporalDep, read_log: ReadLogDep,
    run: Annotated[int | None, Query(ge=1, le=10_000, description="Run number, 1 = first")] = None,
) -> Response:
    await cases.locate(case_id, actor, session=session, temporal=temporal)
    # As Temporal keeps it, payloads encrypted: the export replays with the payload keys and reads in
    # the Web UI through the codec endpoint; a copy handed over does not carry the caller's data in clear.
    runs = await history.fetch_case_history(await temporal.client(), case_id, decode=False)
    if run is not None and run > len(runs):
        raise RunNotFound(f"case {case_id} has no run {run}: it has {len(runs)}")
    chosen = runs[(run or len(runs)) - 1]
    await read_log.aaccess([case_id], kind="history", detail=f"run {run or len(runs)}")
    return Response(history.export_history_json(chosen), media_type="application/json",
                    headers={"X-Case-Runs": str(len(runs)),
                             "Content-Disposition": f'inline; filename="case-{case_id}-run{run or len(runs)}.json"'})


@router.post("/cases/{case_id}/replay", operation_id="case_replay", response_model=ReplayVerdict,
             summary="Check the history still replays under today's code",
             description="Replays every run with Temporal's Replayer; a divergence names the first event at which "
                         "today's code and the history part ways. Changes nothing.",
             responses=FROM_HISTORY)
async def case_replay(case_id: CaseIdPath, actor: ActorDep, session: SessionDep,
                      temporal: TemporalDep) -> ReplayVerdict:
    client = await temporal.client()
    # The history is fetched while the read model says whether this auditor may see the case; it is
    # replayed (and answered) only if so.
    fetched = asyncio.ensure_future(history.fetch_case_history(client, case_id, decode=False))
    try:
        await cases.locate(case_id, actor, session=session, temporal=temporal)
    except BaseException:
        fetched.cancel()
        fetched.add_done_callback(lambda f: f.cancelled() or f.exception())  # its error is not news
        raise
    report = await history.replay_histories(await fetched, data_converter=client.data_converter)
    if report.results and all(result.erased for result in report.results):
        raise history.CaseErased(case_id)  # 410: nothing left to replay
    return ReplayVerdict(case_id=case_id, ok=report.ok, results=report.results)


@router.get("/cases/{case_id}/audit", operation_id="case_audit", response_model=CaseAudit,
            summary="The case's audit-log entries",
            description="Every domain event of the case as recorded in the hash-chained audit log, in event order, "
                        "with the exact text each hash covers.")
async def case_audit(case_id: CaseIdPath, actor: ActorDep, session: SessionDep, temporal: TemporalDep) -> CaseAudit:
    await cases.locate(case_id, actor, session=session, temporal=temporal)
    entries = await asyncio.to_thread(audit.entries_for_case, session, case_id)
    return CaseAudit(case_id=case_id, entries=[AuditEntryPublic.from_entry(e) for e in entries])


@router.get("/cases/{case_id}/audit/check", operation_id="case_audit_check", response_model=audit.SourceComparison,
            summary="Hold the case's audit log against Temporal's history",
            description="Compares every audit entry of the case with the domain event its workflow history says "
                        "was projected. The hash chain proves the log was not changed after writing unless every "
                        "later hash was recomputed; this catches even that: an altered, missing or invented entry "
                        "is named by its event number.",
            responses=FROM_HISTORY)
async def case_audit_check(case_id: CaseIdPath, actor: ActorDep, session: SessionDep,
                           temporal: TemporalDep) -> audit.SourceComparison:
    await cases.locate(case_id, actor, session=session, temporal=temporal)
    runs = await history.fetch_case_history(await temporal.client(), case_id)
    entries = await asyncio.to_thread(audit.entries_for_case, session, case_id)
    return audit.compare_with_source(case_id, entries, history.projected_events(runs))


@router.post("/audit/verify", status_code=202, response_model=Job, dependencies=[allow(Role.auditor)],
             summary="Verify the whole audit chain (a background job)",
             description="Starts recomputing every hash of the audit log in the background and answers **202** with "
                         "the job (`Location: /audit/jobs/{job_id}`); while a verification is running, answers with "
                         "that one instead of starting another. Its result is the chain report: record `head_hash`, "
                         "a later run that no longer contains it shows the tail was cut off or rewritten. Auditors "
                         "only (the chain spans every region).")
async def verify_audit(request: Request, response: Response, actor: ActorDep, engine: EngineDep,
                       now: NowDep) -> Job:
    registry = jobs_of(request)
    job = registry.running("audit_verify")
    if job is None:
        def work(job: Job) -> dict:
            def progress(checked: int) -> None:
                job.done = checked
            with Session(engine) as session:
                job.total = audit.count_entries(session)
                report = audit.verify_chain(session, progress=progress)
            job.done = report.checked
            return report.model_dump(mode="json")

        job = registry.start("audit_verify", actor.user_id, now, work, clock=lambda: datetime.now(UTC))
    response.headers["Location"] = f"/audit/jobs/{job.job_id}"
    return job


@router.get("/audit/jobs/{job_id}", response_model=Job, dependencies=[allow(Role.auditor)],
            summary="A background job's progress and result",
            description="`done` of `total` so far; once `status` is `done`, `result` holds the answer (for a "
                        "verification, the chain report: `ok`, `checked`, `head_hash`, `first_broken`). Only the "
                        "user who started the job sees it. Jobs live in the API process: a restart forgets them.")
def audit_job(request: Request, actor: ActorDep,
              job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> Job:
    return jobs_of(request).get(job_id, actor.user_id)


@router.get("/audit/reads", response_model=CallerDataReadPage, dependencies=[allow(Role.auditor)],
            summary="Who was shown a case's caller data in full, or read its history",
            description="Every answer that carried the case's caller name and phone (or identity card number) "
                        "unmasked (`kind` caller), and every read of its Temporal history: the timeline, the raw "
                        "history download, payloads decrypted through `/codec/decode` (`kind` timeline, history, "
                        "payloads). Who, in which role and region, what, through which route, when; newest "
                        "first. The log holds no caller data. Auditors only, for cases in their region.")
async def caller_data_reads(
    actor: ActorDep, session: SessionDep, temporal: TemporalDep,
    case_id: Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$", description="The case number")],
    user_id: Annotated[str | None, Query(max_length=64, description="Only this reader")] = None,
    kind: Annotated[ReadKind | None, Query(description="Only this kind of read")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> CallerDataReadPage:
    await cases.locate(case_id, actor, session=session, temporal=temporal)
    page = await asyncio.to_thread(reads.for_case, session, case_id, user_id=user_id, kind=kind,
                                   limit=limit, offset=offset)
    return CallerDataReadPage(
        items=[CallerDataReadPublic(case_id=r.case_id, user_id=r.user_id, role=Role(r.role), region_code=r.region_code,
                                    kind=r.kind, fields=r.fields.split(","), route=r.route, read_at=r.read_at)
               for r in page.items],
        total=page.total, limit=limit, offset=offset)
