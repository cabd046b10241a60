"""Follow-up and closure: the return visit asks the caller's satisfaction; a dissatisfied caller's
case is reviewed by the supervisor before it closes. A case may be withdrawn at any open stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from disputeflow.domain.case import CaseState
from disputeflow.domain.clocks import ClockStatus
from disputeflow.domain.enums import FinalOutcome, Role, Stage
from disputeflow.domain.process import changes as c
from disputeflow.domain.process.command import OPEN_STAGES, Change, Command, Note, Reason, note


class RecordReturnVisit(Command):
    type: Literal["record_return_visit"] = "record_return_visit"
    satisfaction: int = Field(ge=1, le=5)
    comment: Note = ""

    stages, roles = frozenset({Stage.follow_up}), frozenset({Role.operator, Role.supervisor})
    what = "record a return visit"
    example = {"satisfaction": 5, "comment": "满意"}

    def apply(self, state: CaseState, change: Change) -> None:
        now, cal, actor = change.now, change.cal, change.actor
        state.satisfaction = self.satisfaction
        if self.satisfaction <= state.policy.follow_up.review_if_satisfaction_at_most:
            event = c.enter(state, Stage.supervisor_review, now, cal, actor, "return_visit_recorded",
                            satisfaction=self.satisfaction, comment=self.comment, dissatisfied=True)
            c.notify(state, event, "caller_dissatisfied", Role.supervisor, None, satisfaction=self.satisfaction,
                     comment=self.comment)
        else:
            c.emit(state, "return_visit_recorded", now, actor, satisfaction=self.satisfaction, comment=self.comment,
                   dissatisfied=False)
            c.close(state, now, cal, actor, state.pending_outcome or FinalOutcome.consultation_answered)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"recorded a return visit: satisfaction {f.get('satisfaction')}/5" + note(f.get("comment"))


class CompleteReview(Command):
    type: Literal["complete_review"] = "complete_review"
    resolution: Reason

    stages, roles = frozenset({Stage.supervisor_review}), frozenset({Role.supervisor})
    what = "complete the review of a dissatisfied caller"

    def apply(self, state: CaseState, change: Change) -> None:
        c.emit(state, "review_completed", change.now, change.actor, resolution=self.resolution)
        c.close(state, change.now, change.cal, change.actor, state.pending_outcome or FinalOutcome.consultation_answered)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"completed the review of the dissatisfied caller ({f.get('resolution')})"


class Withdraw(Command):
    type: Literal["withdraw"] = "withdraw"
    reason: Reason

    stages, roles, what = OPEN_STAGES, frozenset({Role.operator, Role.supervisor}), "close a withdrawn case"

    def apply(self, state: CaseState, change: Change) -> None:
        c.emit(state, "withdrawn", change.now, change.actor, reason=self.reason)
        c.close(state, change.now, change.cal, change.actor, FinalOutcome.withdrawn, clock_status=ClockStatus.cancelled)

    @classmethod
    def did(cls, f: dict[str, Any]) -> str:
        return f"closed the case as withdrawn ({f.get('reason')})"
