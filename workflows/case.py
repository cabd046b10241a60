"""One workflow per case: the dispute's life from intake to closure, with its deadlines as timers.

The process rules live in `disputeflow.domain`; this module only orchestrates. The case exists
from the workflow's first task (intake pinned its policy and recorded when the call came in, so
every first clock starts then, however long the case waited for a worker). Every change is
synchronous: an action (the `act` update), a due alarm, or a person found for the case. After
each change the workflow queues a snapshot for the read model and, if the case now waits for a
mediator or a lawyer, looks for one in the background; nothing waits for the database while it
holds the case, so a slow or absent database never holds up a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.case import PROJECTION_REFUSED, CaseActivities
    from disputeflow.contracts import (
        CaseResult,
        CaseStart,
        ChoosePersonInput,
        FindPersonInput,
        Projection,
        ProjectionRefusal,
        workflow_id_for,
    )
    from disputeflow.domain import actions as a
    from disputeflow.domain import drills, lifecycle
    from disputeflow.domain.calendar import BusinessCalendar
    from disputeflow.domain.case import CaseState, CaseView, PersonWanted
    from disputeflow.domain.policy import CasePolicy
    from disputeflow.temporal import CASE_BREACHED, CASE_REGION, CASE_STAGE, CASE_URGENCY
    from workflows.snapshots import SnapshotQueue

REFUSED = "TransitionRefused"
WRITE_AFTER_REARMING = "write-after-rearming"  # patch: see `CaseWorkflowV2._after_rearming`

# Every activity retries until its database is back: a case must never fail, or be left
# half-changed, because of an outage. Each attempt is bounded; the errors show in the pending activity.
_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)


@workflow.defn(name="CaseWorkflowV2")
class CaseWorkflowV2:
    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        if start.carried is not None:
            state = start.carried
            state.runs += 1
            self._cal = _calendar_for(state.policy)
        else:
            assert start.policy is not None and start.registered_at is not None  # CaseStart checks
            self._cal = _calendar_for(start.policy)
            state = lifecycle.open_case(start.case_id, start.intake, start.policy, start.registered_at, self._cal,
                                        registered_by=start.registered_by)
        self._state: CaseState = state
        self._changes = 0  # bumped by every change: the run loop re-arms its timer
        self._rearmed = 0  # bumped by the run loop each time round, before it arms its timer
        self._quiescing = False  # the run loop has stopped re-arming: it waits for the case to settle
        # A write that starts while the queue is idle waits until the run loop has re-armed: see
        # `_after_rearming`. Cases recorded before this patch wrote at once.
        gate = self._after_rearming if workflow.patched(WRITE_AFTER_REARMING) else None
        self._snapshots: SnapshotQueue[RawValue] = SnapshotQueue(self._write, gate=gate)
        self._searching: PersonWanted | None = None  # the person a search under way is for
        self._searches: set[asyncio.Task] = set()
        self._indexed: tuple | None = None

    @workflow.run
    async def run(self, start: CaseStart) -> CaseResult:
        state = self._state
        self._changed()  # the first snapshot of this run, and a search a carried case still needs
        while not state.closed:
            seen = self._changes
            self._rearmed += 1
            due = lifecycle.next_alarm_at(state)
            if due is None or due > workflow.now():
                try:
                    await workflow.wait_condition(
                        lambda: self._changes != seen or self._should_continue_as_new(),
                        timeout=None if due is None else due - workflow.now(),
                    )
                except asyncio.TimeoutError:
                    pass
            if lifecycle.fire_alarms(state, workflow.now(), self._cal):
                self._changed()
            if not state.closed and self._should_continue_as_new():
                await self._quiesce()  # the next run starts with the read model caught up
                workflow.continue_as_new(CaseStart(case_id=state.case_id, intake=state.intake, carried=state))
        await self._quiesce()
        return CaseResult(case_id=state.case_id, final_outcome=state.final_outcome, closed_at=state.closed_at)

    # -- People act through one update ------------------------------------------------------

    @workflow.update
    async def act(self, request: a.ActionRequest) -> CaseView:
        state = self._state
        if request.request_id in state.applied_requests:  # the same request again changes nothing
            await self._snapshots.written()
            return lifecycle.view(state)
        self._refuse_unless_allowed(request)  # again: an earlier action may have moved the case since
        before = state.wanted
        lifecycle.apply(state, request, workflow.now(), self._cal)
        self._changed()
        # Holding nothing from here: timers fire and others act meanwhile. The caller reads the
        # case with the person this action asked for, and finds the change in listings and inboxes.
        if (wanted := state.wanted) is not None and wanted is not before:
            await workflow.wait_condition(lambda: state.wanted is not wanted)  # found, or the case moved on
        await self._snapshots.written()
        return lifecycle.view(state)

    @act.validator
    def _validate_act(self, request: a.ActionRequest) -> None:
        # Refused here, a request leaves no trace in the history.
        if request.request_id not in self._state.applied_requests:
            self._refuse_unless_allowed(request)

    @workflow.query
    def view(self) -> CaseView:
        return lifecycle.view(self._state)

    @workflow.query
    def drill(self, inp: drills.DrillRequest) -> drills.DrillAnswer:
        """What the case's clocks will do if nobody acts, and after a proposed action: a dry run on a
        copy of the state (a query records nothing in the history). From the caller's `now`, or the
        workflow's own time if that is later."""
        now = max(inp.now, workflow.now())
        return drills.answer(self._state, self._cal, now, inp.request, horizon=timedelta(days=inp.horizon_days))

    # -- After every change ---------------------------------------------------------------

    def _changed(self) -> None:
        """Re-arm the timer, keep Temporal's search attributes in step, queue what the read model
        lacks, and start looking for the person the case now waits for, if any."""
        self._changes += 1
        self._index()
        snapshot = self._snapshot()
        if snapshot is not None:
            self._snapshots.put(snapshot)
        wanted = self._state.wanted
        if wanted is not None and wanted != self._searching:
            self._searching = wanted
            task = asyncio.create_task(self._search(wanted))
            self._searches.add(task)
            task.add_done_callback(self._searches.discard)

    async def _search(self, wanted: PersonWanted) -> None:
        """Find or choose the person `wanted` asks for and record it, a system step of its own."""
        state = self._state
        if wanted.person_id is not None:
            look_up = CaseActivities.find_mediator if wanted.kind == "mediator" else CaseActivities.find_lawyer
            found = await workflow.execute_activity_method(
                look_up, FindPersonInput(person_id=wanted.person_id, region_code=state.intake.region_code), **_ACTIVITY)
        else:
            # The read model first shows the case as it stands, so the choice's load count is right.
            await self._snapshots.written()
            choose = CaseActivities.choose_mediator if wanted.kind == "mediator" else CaseActivities.choose_lawyer
            found = await workflow.execute_activity_method(
                choose, ChoosePersonInput(case_id=state.case_id, region_code=state.intake.region_code,
                                          dispute_type=state.intake.dispute_type, exclude=wanted.exclude),
                **_ACTIVITY)
        if self._searching == wanted:
            self._searching = None
        if lifecycle.fill(state, wanted, found, workflow.now(), self._cal):
            self._changed()

    def _settled(self) -> bool:
        return self._state.wanted is None and not self._searches and self._snapshots.idle

    async def _quiesce(self) -> None:
        """Before continuing as new or completing: every action answered, every search done and
        every snapshot written."""
        self._quiescing = True  # no more re-arming: writes go ahead at once
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() and self._settled())

    # -- Internals ------------------------------------------------------------------------

    def _refuse_unless_allowed(self, request: a.ActionRequest) -> None:
        try:
            lifecycle.check(self._state, request)
        except lifecycle.Refused as refusal:
            # The code and its values beside the words, so that the console can say it in Chinese.
            raise ApplicationError(str(refusal), {"code": refusal.code, "params": refusal.params}, type=REFUSED,
                                   non_retryable=True) from None

    def _snapshot(self) -> RawValue | None:
        """What the read model lacks of the case as it stands now, taken off the case's to-do: the
        events after the last snapshot and the notifications not yet handed over. Serialized at
        once (a `Projection` as the activity's payload): a queued snapshot must not see later
        changes to the case's objects, and these are the bytes scheduling the activity would write
        anyway (a deep copy of the objects cost more than the whole serialization)."""
        state = self._state
        events = [e for e in state.timeline if e.seq > state.projected_seq]
        notifications = state.outbox
        if not events and not notifications:
            return None
        projection = Projection(
            case_id=state.case_id, workflow_id=workflow_id_for(state.case_id), intake=state.intake,
            stage=state.stage, phase=state.phase.value,
            mediator_id=state.mediator.id if state.mediator else None,
            lawyer_id=state.lawyer.id if state.lawyer else None,
            opened_at=state.opened_at, updated_at=workflow.now(), closed_at=state.closed_at,
            final_outcome=state.final_outcome, satisfaction=state.satisfaction,
            policy_version=state.policy.version, breached=state.breached,
            tasks=lifecycle.open_tasks(state), clocks=state.clocks, events=events,
            notifications=notifications,
        )
        snapshot = RawValue(workflow.payload_converter().to_payload(projection))
        if events:
            state.projected_seq = events[-1].seq
        state.outbox = []
        return snapshot

    def _after_rearming(self) -> Awaitable[None]:
        """The gate of the snapshot queue, called as a change puts a snapshot into an idle queue:
        the write waits until the run loop has gone round once more (and so cancelled and re-armed
        its timer for the change), or has stopped going round.

        Why: an action's change cancels the run loop's timer, starts a new one and schedules a
        write. If the previous write's completion reached the workflow in an earlier activation,
        the queue was idle and used to schedule the write at once, before the timers; if it came
        in the same activation as the action (the SDK applies updates first), the write came after
        them. Temporal's Core does not always group history into activations the same way live and
        on replay (an update after a workflow task with no commands), so a case could fail to
        replay. With the gate the write always follows the timers."""
        seen = self._rearmed  # now, as the change is made: the run loop may go round before the write starts
        return workflow.wait_condition(lambda: self._rearmed != seen or self._quiescing)

    async def _write(self, projection: RawValue) -> None:
        """Write a snapshot (a serialized `Projection`) to the read model."""
        try:
            await workflow.execute_activity_method(CaseActivities.project_case, projection, **_ACTIVITY)
        except ActivityError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == PROJECTION_REFUSED):
                raise
            # The read model will never take this case's data: the case says so on its timeline and to
            # its supervisors, once, and goes on (its deadlines do not depend on the read model).
            state = self._state
            if lifecycle.read_model_refused(state, workflow.now(), cause.message):
                await workflow.execute_activity_method(
                    CaseActivities.report_projection_refused,
                    ProjectionRefusal(case_id=state.case_id, region_code=state.intake.region_code,
                                      event_seq=state.timeline[-1].seq, reason=cause.message),
                    **_ACTIVITY)

    def _index(self) -> None:
        """Keep Temporal's own search attributes in step, so its UI and CLI can filter cases."""
        state = self._state
        current = (state.stage, state.breached)
        if current == self._indexed:
            return
        self._indexed = current
        workflow.upsert_search_attributes([
            CASE_STAGE.value_set(state.stage.value),
            CASE_REGION.value_set(state.intake.region_code),
            CASE_URGENCY.value_set(state.intake.urgency.value),
            CASE_BREACHED.value_set(state.breached),
        ])

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self._state.policy.max_history_events


def _calendar_for(policy: CasePolicy) -> BusinessCalendar:
    """The case's pinned calendar; a day it does not cover counts Monday to Friday, with a warning."""
    return BusinessCalendar(
        policy.calendar,
        on_fallback=lambda day: workflow.logger.warning(
            "calendar data does not cover %s; counting Monday to Friday as working days", day.year
        ),
    )

