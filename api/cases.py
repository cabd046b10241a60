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
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import in_scope
from api.errors import ActionAccepted, CaseNotAnswering, CaseNotFound, Forbidden, TransitionRefused
from api.schemas import CaseDetail
from api.temporal_gateway import TemporalGateway
from disputeflow.contracts import CaseStart, workflow_id_for
from disputeflow.db import intake as intake_db
from disputeflow.db import queries, reference
from disputeflow.db.engine import write_session
from disputeflow.db.erasure import is_erased
from disputeflow.domain import actions as a
from disputeflow.domain import lifecycle
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import CaseView
from disputeflow.domain.drills import DrillAnswer, DrillRequest
from disputeflow.domain.intake import Intake
from disputeflow.pinning import PolicyPins
from workflows.case import REFUSED, CaseWorkflowV2

QUERY_TIMEOUT = timedelta(seconds=3)  # then an open case is read from the read model
ACCEPT_TIMEOUT_SECONDS = 5.0  # how long an action waits for the case's worker to take it up
ACT_TIMEOUT_SECONDS = 20.0  # and, taken up, to finish (find a mediator, write the read model)

# A start that failed with one of these may still have reached the server.
OUTCOME_UNKNOWN = frozenset({RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.UNKNOWN})


@dataclass(frozen=True)
class CaseRef:
    """Enough of a case to decide who may see it."""

    case_id: str
    region_code: str
    mediator_id: str | None


def _handle(client: Client, case_id: str) -> WorkflowHandle:
    """The case's workflow, of whichever type it runs (both answer `view` and take `act`)."""
    return client.get_workflow_handle(workflow_id_for(case_id))


def _ensure_in_scope(actor: a.Actor, ref: CaseRef) -> None:
    if not in_scope(actor, region_code=ref.region_code, mediator_id=ref.mediator_id):
        raise CaseNotFound(ref.case_id)


def _ref_of_view(view: CaseView) -> CaseRef:
    return CaseRef(view.case_id, view.intake.region_code, view.mediator.id if view.mediator else None)


async def live_view(client: Client, case_id: str) -> CaseView | None:
    """The workflow's current view (None only from a legacy case still opening). `CaseNotFound` if
    there is no workflow."""
    try:
        return await _handle(client, case_id).query("view", result_type=CaseView | None, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(case_id) from None
        raise


async def locate(case_id: str, actor: a.Actor, *, session: Session, temporal: TemporalGateway) -> CaseRef:
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


async def case_detail(case_id: str, actor: a.Actor, *, session: Session, temporal: TemporalGateway) -> CaseDetail:
    """An open case live from its workflow; a closed one (or one whose workflow is gone) from the read model."""
    record = await asyncio.to_thread(queries.case_record, session, case_id)
    if record is None or record.closed_at is None:
        try:
            view = await live_view(await temporal.client(), case_id)
        except CaseNotFound:
            if record is None:
                raise
            view = None  # the workflow is gone (retention): the read model is what is left
        except RPCError:  # no worker answers (or Temporal is down): the read model, marked with its age
            if record is None:
                raise CaseNotAnswering(f"case {case_id} is not answering and is not in the read model yet; "
                                       "try again in a moment") from None
            view = None
        if view is not None:
            _ensure_in_scope(actor, _ref_of_view(view))
            return CaseDetail.from_view(view, actor=actor)
        if record is None:
            raise CaseNotAnswering(f"case {case_id} is still opening; try again in a moment")
    _ensure_in_scope(actor, CaseRef(record.case_id, record.region_code, record.mediator_id))
    rows = await asyncio.to_thread(queries.case_rows, session, case_id)
    assert rows is not None
    return CaseDetail.from_rows(rows, actor=actor)


# -- Intake ------------------------------------------------------------------------------------


def _claim(engine: Engine, numbers: intake_db.CaseNumbers, key: str | None, intake: Intake, now: datetime, *,
           owner: str, key_ttl: timedelta) -> intake_db.IntakeClaim:
    if key is None:
        return intake_db.IntakeClaim(case_id=numbers.next(region_code=intake.region_code, now=now), created=True,
                                     registered_at=now)
    with write_session(engine) as session:
        return intake_db.claim_intake_key(session, key=key, fingerprint=intake_db.intake_fingerprint(intake),
                                          region_code=intake.region_code, now=now, owner=owner, ttl=key_ttl)


def _release(engine: Engine, key: str, case_id: str, owner: str) -> None:
    with write_session(engine) as session:
        intake_db.release_intake_key(session, key=key, case_id=case_id, owner=owner)


def opened_view(start: CaseStart) -> CaseView:
    """The case exactly as its workflow opens it: the same pure rule on the same input."""
    assert start.policy is not None and start.registered_at is not None
    state = lifecycle.open_case(start.case_id, start.intake, start.policy, start.registered_at,
                                BusinessCalendar(start.policy.calendar), registered_by=start.registered_by)
    return lifecycle.view(state)


async def _start(client: Client, start: CaseStart, task_queue: str) -> None:
    """Start the case's workflow, or find it: starting the same case twice is a no-op (a retry
    after a crash between recording the key and starting), even after the case has closed."""
    try:
        await client.start_workflow(
            CaseWorkflowV2.run, start, id=workflow_id_for(start.case_id), task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:  # it ran and closed already: the same case
        pass


async def register_case(intake: Intake, *, key: str | None, actor: a.Actor, engine: Engine, session: Session,
                        temporal: TemporalGateway, task_queue: str, pins: PolicyPins,
                        numbers: intake_db.CaseNumbers, now: datetime,
                        key_ttl: timedelta) -> tuple[CaseDetail, bool]:
    """Register a call as a new case (or, for a key seen before with the same intake, find it).

    Returns the case and whether this request created it. One round trip to Temporal: the start
    is durable when it returns, and the case it opens is a pure function of its input, so the
    answer is the case as its workflow opens it, whether or not a worker has picked it up yet.
    Nothing is written while Temporal is unreachable; if the start itself fails for certain, the
    key is forgotten again, so no half-created case remains (the case number stays used: numbers
    are unique, not gapless).
    """
    if not intake.region_code.startswith(actor.region_code or ""):
        raise Forbidden(f"region {intake.region_code} is outside your region {actor.region_code}; "
                        "register the case in its own region")
    client = await temporal.client()
    # Most keyless intakes take a number already reserved, with no database call and no thread.
    reserved = numbers.reserved(region_code=intake.region_code, now=now) if key is None else None
    claim = intake_db.IntakeClaim(case_id=reserved, created=True, registered_at=now) if reserved is not None else \
        await asyncio.to_thread(_claim, engine, numbers, key, intake, now, owner=actor.user_id, key_ttl=key_ttl)
    start = pins.start(claim.case_id, intake, registered_at=claim.registered_at, registered_by=actor)
    # The caller's other open cases are looked up while Temporal starts this one (neither waits for the other).
    duplicates = asyncio.ensure_future(asyncio.to_thread(
        queries.open_case_ids_of_caller, engine, phone=intake.caller.phone, region_prefix=actor.region_code,
        exclude=claim.case_id)
    ) if claim.created else None
    try:
        await _start(client, start, task_queue)
    except BaseException as exc:
        if duplicates is not None:
            duplicates.cancel()
            duplicates.add_done_callback(lambda f: f.cancelled() or f.exception())  # its error is not news
        # With an unknown outcome the key stays: a retry with it finds or starts the same case.
        if isinstance(exc, RPCError) and key is not None and claim.created and exc.status not in OUTCOME_UNKNOWN:
            await asyncio.to_thread(_release, engine, key, claim.case_id, actor.user_id)
        raise
    if duplicates is not None:
        detail = CaseDetail.from_view(opened_view(start), actor=actor)
        detail.possible_duplicates = await duplicates
    else:
        detail = await case_detail(claim.case_id, actor, session=session, temporal=temporal)
    return detail, claim.created


# -- Actions -----------------------------------------------------------------------------------


def new_request_id() -> str:
    return uuid.uuid4().hex


async def _check_named_person(command: a.Command, ref: CaseRef, session: Session) -> None:
    """Refuse at once a mediator or lawyer an action names who does not serve the case's city.
    The workflow looks the person up again as it assigns them (the record may change meanwhile)."""
    match command:
        case a.ReassignMediator(mediator_id=str() as person_id):
            found = await asyncio.to_thread(reference.find_mediator, session, mediator_id=person_id,
                                            region_code=ref.region_code)
            what = "mediator"
        case a.AssignLawyer(lawyer_id=person_id):
            found = await asyncio.to_thread(reference.find_lawyer, session, lawyer_id=person_id,
                                            region_code=ref.region_code)
            what = "legal-aid lawyer"
        case _:
            return
    if found is None:
        raise TransitionRefused(f"no active {what} '{person_id}' serves the city of region {ref.region_code}",
                                code=f"no_such_{'mediator' if what == 'mediator' else 'lawyer'}",
                                params={"person": person_id, "region": ref.region_code})


def _refusal(exc: WorkflowUpdateFailedError) -> TransitionRefused:
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == REFUSED:
        said = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}  # legacy: words only
        return TransitionRefused(cause.message, code=said.get("code"), params=said.get("params"))
    raise exc


async def act(case_id: str, command: a.Command, *, request_id: str, actor: a.Actor, session: Session,
              temporal: TemporalGateway) -> CaseDetail:
    """Send one action to the case. The same `request_id` again changes nothing and returns the
    state after the first (Temporal deduplicates by update id, the workflow by request id).

    Three answers besides a refusal: the case after the action; `ActionAccepted` (202) when the
    case took the action up but has not finished it in time (it will; the same request id then
    answers with the result); `CaseNotAnswering` (503) when no worker took it up in time: the
    server may still hand it over later, and the same request id applies it at most once.
    """
    ref = await locate(case_id, actor, session=session, temporal=temporal)
    await _check_named_person(command, ref, session)
    client = await temporal.client()
    request = a.ActionRequest(request_id=request_id, actor=actor, command=command)
    began = time.monotonic()
    try:
        update = await asyncio.wait_for(
            _handle(client, case_id).start_update("act", request, id=request_id, result_type=CaseView,
                                                  wait_for_stage=WorkflowUpdateStage.ACCEPTED),
            ACCEPT_TIMEOUT_SECONDS)
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # it exists (located above), so its workflow has ended
            raise TransitionRefused(f"case {case_id} is closed; nothing more can be done to it", code="case_closed",
                                    params={"case": case_id}) from None
        raise
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise CaseNotAnswering(
            f"case {case_id} did not take the action up within {ACCEPT_TIMEOUT_SECONDS:g} s (its worker is slow or "
            "down); it may still do so: retry with the same Idempotency-Key, which acts at most once") from None
    try:  # taken up: from here on it will be carried out, whatever the wait says
        view = await asyncio.wait_for(update.result(), ACT_TIMEOUT_SECONDS - (time.monotonic() - began))
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
        raise ActionAccepted(case_id, request_id, ACT_TIMEOUT_SECONDS) from None
    return CaseDetail.from_view(view, actor=actor)


# -- Drills ------------------------------------------------------------------------------------


async def drill(case_id: str, command: a.Command | None, *, actor: a.Actor, session: Session,
                temporal: TemporalGateway, now: datetime, horizon_days: int) -> DrillAnswer:
    """Ask the case's workflow what its clocks will do, if nobody acts and after `command`, without
    doing it: a query, which records nothing. A refused action is 409 with the rule's words; a
    closed case, or one still on the legacy workflow type (which has no drill), is 409 too."""
    ref = await locate(case_id, actor, session=session, temporal=temporal)
    record = await asyncio.to_thread(queries.case_record, session, case_id)
    if record is not None and is_erased(record):
        # Its data key is destroyed: the worker could not replay its history to answer (nor should it).
        raise TransitionRefused(f"case {case_id} was erased: it is closed and its history can no longer be read")
    if command is not None:
        await _check_named_person(command, ref, session)
    request = (a.ActionRequest(request_id=f"drill-{new_request_id()}", actor=actor, command=command)
               if command is not None else None)
    inp = DrillRequest(now=now, request=request, horizon_days=horizon_days)
    handle = _handle(await temporal.client(), case_id)
    try:
        result = await handle.query("drill", inp, result_type=DrillAnswer, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowQueryFailedError:
        # The failure's message may be encrypted (payload codec): ask the workflow's type instead.
        described = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
        if described.workflow_type != "CaseWorkflowV2":
            raise TransitionRefused(
                f"case {case_id} still runs on the legacy workflow type, which cannot answer a drill; "
                "its deadlines are shown on the case") from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise TransitionRefused(f"case {case_id} is closed; its clocks have ended") from None
        raise
    if result.refused is not None:
        raise TransitionRefused(result.refused)
    return result
