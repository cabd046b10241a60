"""Case services for the routes: register a case, find one in the caller's scope, show it, act on it.

Temporal is the truth for an open case (its workflow's `view` query and `act` update); the read
model answers for closed cases, listings and scope checks. Database calls run in a thread so a
locked SQLite file never stalls the event loop that Temporal's client shares.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import in_scope
from api.errors import CaseNotAnswering, CaseNotFound, Forbidden, TransitionRefused
from api.schemas import CaseAccepted, CaseDetail
from api.temporal_gateway import TemporalGateway
from disputeflow.contracts import CaseInput, workflow_id_for
from disputeflow.db import intake as intake_db
from disputeflow.db import queries
from disputeflow.db.engine import write_session
from disputeflow.domain.actions import ActionRequest, Actor, Command
from disputeflow.domain.case import CaseView
from disputeflow.domain.intake import Intake
from workflows.case import REFUSED, CaseWorkflow

OPEN_WAIT_SECONDS = 5.0  # how long POST /cases waits for the new case to open
OPEN_POLL_SECONDS = 0.1
QUERY_TIMEOUT = timedelta(seconds=5)
ACT_TIMEOUT_SECONDS = 20.0  # an action runs activities (find a mediator, project the case)

# A start that failed with one of these may still have reached the server.
OUTCOME_UNKNOWN = frozenset({RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.UNKNOWN})


@dataclass(frozen=True)
class CaseRef:
    """Enough of a case to decide who may see it."""

    case_id: str
    region_code: str
    mediator_id: str | None


def _handle(client: Client, case_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(CaseWorkflow.run, workflow_id_for(case_id))


def _ensure_in_scope(actor: Actor, ref: CaseRef) -> None:
    if not in_scope(actor, region_code=ref.region_code, mediator_id=ref.mediator_id):
        raise CaseNotFound(ref.case_id)


def _ref_of_view(view: CaseView) -> CaseRef:
    return CaseRef(view.case_id, view.intake.region_code, view.mediator.id if view.mediator else None)


async def live_view(client: Client, case_id: str) -> CaseView | None:
    """The workflow's current view; None while it is opening. `CaseNotFound` if there is no workflow."""
    try:
        return await _handle(client, case_id).query(CaseWorkflow.view, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(case_id) from None
        raise


async def locate(case_id: str, actor: Actor, *, session: Session, temporal: TemporalGateway) -> CaseRef:
    """The case if it exists and `actor` may see it, else `CaseNotFound` (the two look alike).

    The read model answers; a case so new that it is not projected yet is asked of its workflow.
    """
    record = await asyncio.to_thread(queries.case_record, session, case_id)
    if record is not None:
        ref = CaseRef(record.case_id, record.region_code, record.mediator_id)
    else:
        view = await live_view(await temporal.client(), case_id)
        if view is None:
            raise CaseNotAnswering(f"case {case_id} is still opening; try again in a moment")
        ref = _ref_of_view(view)
    _ensure_in_scope(actor, ref)
    return ref


async def case_detail(case_id: str, actor: Actor, *, session: Session, temporal: TemporalGateway) -> CaseDetail:
    """An open case live from its workflow; a closed one (or one whose workflow is gone) from the read model."""
    record = await asyncio.to_thread(queries.case_record, session, case_id)
    if record is None or record.closed_at is None:
        try:
            view = await live_view(await temporal.client(), case_id)
        except CaseNotFound:
            if record is None:
                raise
            view = None  # the workflow is gone (retention): the read model is what is left
        if view is not None:
            _ensure_in_scope(actor, _ref_of_view(view))
            return CaseDetail.from_view(view)
        if record is None:
            raise CaseNotAnswering(f"case {case_id} is still opening; try again in a moment")
    _ensure_in_scope(actor, CaseRef(record.case_id, record.region_code, record.mediator_id))
    rows = await asyncio.to_thread(queries.case_rows, session, case_id)
    assert rows is not None
    return CaseDetail.from_rows(rows)


# -- Intake ------------------------------------------------------------------------------------


def _claim(engine: Engine, key: str | None, intake: Intake, now: datetime) -> intake_db.IntakeClaim:
    with write_session(engine) as session:
        if key is None:
            return intake_db.IntakeClaim(
                case_id=intake_db.next_case_id(session, region_code=intake.region_code, now=now), created=True)
        return intake_db.claim_intake_key(session, key=key, fingerprint=intake_db.intake_fingerprint(intake),
                                          region_code=intake.region_code, now=now)


def _release(engine: Engine, key: str, case_id: str) -> None:
    with write_session(engine) as session:
        intake_db.release_intake_key(session, key=key, case_id=case_id)


async def _start(client: Client, case_id: str, intake: Intake, actor: Actor, task_queue: str) -> WorkflowHandle:
    """Start the case's workflow, or find it: starting the same case twice is a no-op (a retry
    after a crash between recording the key and starting), even after the case has closed."""
    try:
        return await client.start_workflow(
            CaseWorkflow.run, CaseInput(case_id=case_id, intake=intake, registered_by=actor), id=workflow_id_for(case_id),
            task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:  # it ran and closed already: the same case
        return _handle(client, case_id)


async def _wait_until_open(handle: WorkflowHandle) -> CaseView | None:
    deadline = time.monotonic() + OPEN_WAIT_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        try:
            view = await handle.query(CaseWorkflow.view, rpc_timeout=timedelta(seconds=max(0.2, min(1.0, remaining))))
        except RPCError as exc:
            if exc.status is RPCStatusCode.UNAVAILABLE:
                raise
            view = None  # no workflow task has run yet: the worker has not picked the case up
        if view is not None or remaining <= 0:
            return view
        await asyncio.sleep(OPEN_POLL_SECONDS)


async def register_case(intake: Intake, *, key: str | None, actor: Actor, engine: Engine,
                        temporal: TemporalGateway, task_queue: str) -> tuple[CaseDetail | CaseAccepted, bool]:
    """Register a call as a new case (or, for a key seen before with the same intake, find it).

    Returns the case and whether this request created it. Nothing is written while Temporal is
    unreachable; if the start itself fails for certain, the key is forgotten again, so no
    half-created case remains (the case number stays used: numbers are unique, not gapless).
    """
    if not intake.region_code.startswith(actor.region_code or ""):
        raise Forbidden(f"region {intake.region_code} is outside your region {actor.region_code}; "
                        "register the case in its own region")
    client = await temporal.client()
    claim = await asyncio.to_thread(_claim, engine, key, intake, datetime.now(timezone.utc))
    try:
        handle = await _start(client, claim.case_id, intake, actor, task_queue)
    except RPCError as exc:
        # With an unknown outcome the key stays: a retry with it finds or starts the same case.
        if key is not None and claim.created and exc.status not in OUTCOME_UNKNOWN:
            await asyncio.to_thread(_release, engine, key, claim.case_id)
        raise
    view = await _wait_until_open(handle)
    if view is None:
        return CaseAccepted(case_id=claim.case_id, detail=(
            f"case {claim.case_id} is registered but has not opened within {OPEN_WAIT_SECONDS:g} s; "
            "fetch it shortly")), claim.created
    detail = CaseDetail.from_view(view)
    detail.possible_duplicates = await asyncio.to_thread(
        _duplicates, engine, phone=intake.caller.phone, region_prefix=actor.region_code, case_id=claim.case_id)
    return detail, claim.created


def _duplicates(engine: Engine, *, phone: str, region_prefix: str | None, case_id: str) -> list[str]:
    with Session(engine) as session:
        return [r.case_id for r in queries.open_cases_of_caller(
            session, phone=phone, region_prefix=region_prefix, exclude=case_id)]


# -- Actions -----------------------------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


async def act(case_id: str, command: Command, *, request_id: str, actor: Actor, session: Session,
              temporal: TemporalGateway) -> CaseDetail:
    """Send one action to the case. The same `request_id` again changes nothing and returns the
    state after the first (Temporal deduplicates by update id, the workflow by request id)."""
    await locate(case_id, actor, session=session, temporal=temporal)
    client = await temporal.client()
    request = ActionRequest(request_id=request_id, actor=actor, command=command)
    try:
        view = await asyncio.wait_for(
            _handle(client, case_id).execute_update(CaseWorkflow.act, request, id=request_id), ACT_TIMEOUT_SECONDS)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == REFUSED:
            raise TransitionRefused(cause.message) from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # it exists (located above), so its workflow has ended
            raise TransitionRefused(f"case {case_id} is closed; nothing more can be done to it") from None
        raise
    except TimeoutError:
        raise CaseNotAnswering(f"case {case_id} did not answer within {ACT_TIMEOUT_SECONDS:g} s; "
                               "retry with the same Idempotency-Key") from None
    return CaseDetail.from_view(view)
