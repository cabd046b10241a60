"""POST /cases/{case_id}/erase: a supervisor erases one closed case's personal data on a verified request."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api import cases
from api.auth import ActorDep, router_for
from api.deps import CaseIdPath, EngineDep, NowDep, SessionDep, TemporalDep
from api.errors import TransitionRefused, error_responses
from disputeflow.case_keys import forget_everywhere
from disputeflow.db.engine import write_session
from disputeflow.db.erasure import CannotErase, ErasureReason, ErasureResult, erase_case
from disputeflow.domain.enums import Role

router = router_for(Role.supervisor, tags=["supervisors"], responses=error_responses(404, 409))


class ErasureRequest(BaseModel):
    """A verified request to erase the case's personal data. No free text: the reason is one of a
    few, and the request itself is named by its registration number, kept with the record."""

    model_config = ConfigDict(extra="forbid")

    reason: Literal["data_subject_request", "legal_obligation"]
    reference: str = Field(pattern=r"^[A-Za-z0-9_:.+\-]{1,64}$", examples=["DSR-2026-0042"],
                           description="The registration number of the verified request (no personal data)")


class ErasureDone(BaseModel):
    case_id: str
    erased_now: bool = Field(description="False: the case had been erased before; nothing changed")
    events: int = Field(description="Case events whose free text was anonymised")
    notifications: int
    at: datetime


@router.post(
    "/cases/{case_id}/erase",
    response_model=ErasureDone,
    summary="Erase a closed case's personal data (verified request)",
    description="Anonymises the caller's name, phone, description and special groups, and the free text of the "
                "case's events and notifications, in the read model; records the erasure (reason, reference, "
                "who, when) in the audit chain, and destroys the case's data key: its Temporal history and the free text of "
                "its audit entries can no longer be decrypted. Closed cases only (409 for an open one). Asking "
                "again changes nothing.",
    responses=error_responses(409, 413, e409="The case is not closed, or cannot be erased; `detail` says why"),
)
async def erase(case_id: CaseIdPath, request: ErasureRequest, actor: ActorDep, session: SessionDep,
                temporal: TemporalDep, engine: EngineDep, now: NowDep) -> ErasureDone:
    await cases.locate(case_id, actor, session=session, temporal=temporal)

    def run() -> ErasureResult:
        with write_session(engine) as writing:
            return erase_case(writing, case_id, now=now, reason=ErasureReason(request.reason), by=actor,
                              reference=request.reference)

    try:
        result = await asyncio.to_thread(run)
    except CannotErase as exc:
        raise TransitionRefused(str(exc)) from None
    forget_everywhere([case_id])  # committed: the case's data key leaves this process's memory too
    return ErasureDone(case_id=case_id, erased_now=result.erased_now, events=result.events,
                       notifications=result.notifications, at=now)
