"""One workflow per case: the dispute's life from intake to closure, with its deadlines as timers.

The process rules live in `disputeflow.domain.lifecycle`; this module only orchestrates: it holds
the state, turns human actions (updates) and due timers into lifecycle calls, and runs activities
for everything that touches the outside world.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.case import CaseActivities
    from disputeflow.contracts import (
        CaseInput,
        CaseResult,
        ChoosePersonInput,
        FindPersonInput,
        PinPolicyInput,
        Projection,
        workflow_id_for,
    )
    from disputeflow.domain import actions as a
    from disputeflow.domain import lifecycle
    from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar
    from disputeflow.domain.case import Assignee, CaseState, CaseView
    from disputeflow.domain.policy import CaseFacts, CasePolicy
    from disputeflow.temporal import CASE_BREACHED, CASE_REGION, CASE_STAGE, CASE_URGENCY

REFUSED = "TransitionRefused"

# Patches (see "Versioning the workflow" in the README). Cases that recorded this marker arm their
# next timer as soon as an alarm has fired and project it in the background, and people's actions
# project outside the case's lock: a slow or unreachable database no longer holds up a deadline.
PROJECT_IN_BACKGROUND = "project-in-background"
# Cases that recorded this marker hold their lock over no database work at all: the people an
# action needs (a named mediator or lawyer, the least-loaded one) are looked up and chosen before
# the action takes the lock, and a new case's first snapshot is written in the background too. A
# database outage then never holds up a deadline.
CHOOSE_PEOPLE_FIRST = "choose-people-before-the-lock"

# Every activity retries until its database or file is back: a case must never fail, or be left
# half-changed, because of an outage (an exhausted retry raised from the run loop would fail the
# whole case workflow). Each attempt is bounded; the errors show in the pending activity.
_ACTIVITY = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)


@dataclass
class _People:
    """Who an action needs, found before it takes the case's lock (see `_find_people`)."""

    named: Assignee | None = None  # the mediator or lawyer the action names, looked up
    # What the action was expected to call for, and whom the workflow chose for it. Used only if
    # applying the action for real calls for the same.
    effects: lifecycle.Effects | None = None
    mediator: Assignee | None = None
    lawyer: Assignee | None = None


@workflow.defn
class CaseWorkflow:
    def __init__(self) -> None:
        self._state: CaseState | None = None
        self._calendar: BusinessCalendar | None = None
        self._lock = asyncio.Lock()  # one change at a time: updates and timers interleave at awaits
        # Read-model writes of the patched branch: snapshots taken at the end of each change (under
        # the lock, so never of a change half made), sent one at a time in order by one drainer.
        self._outgoing: list[Projection] = []
        self._queued = 0  # snapshots ever queued in this run
        self._sent = 0  # of which written
        self._drainer: asyncio.Task | None = None
        self._changed = False
        self._indexed: tuple | None = None

    # -- Run -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        now = workflow.now()
        if inp.carried is not None:
            self._state = inp.carried
            self._state.runs += 1
        else:
            facts = CaseFacts(
                region_code=inp.intake.region_code, category=inp.intake.category,
                dispute_type=inp.intake.dispute_type, urgency=inp.intake.urgency,
                special_groups=inp.intake.special_groups,
            )
            policy = await workflow.execute_activity_method(
                CaseActivities.pin_case_policy,
                PinPolicyInput(facts=facts, opened_on=now.astimezone(SHANGHAI).date()),
                **_ACTIVITY,
            )
            async with self._lock:
                self._calendar = self._calendar_for(policy)
                self._state = lifecycle.open_case(
                    inp.case_id, inp.intake, policy, workflow.now(), self._cal(), registered_by=inp.registered_by
                )
                if workflow.patched(CHOOSE_PEOPLE_FIRST):
                    self._index()
                    self._queue_projection()  # the new case's clocks run even if the database is down
                else:
                    await self._settle(lifecycle.Effects())
        state = self._state

        while not state.closed:
            due = lifecycle.next_alarm_at(state)
            timeout = None if due is None else max(due - workflow.now(), timedelta(0))
            self._changed = False
            if timeout is None or timeout > timedelta(0):
                try:
                    await workflow.wait_condition(lambda: self._changed or self._should_continue_as_new(), timeout=timeout)
                except asyncio.TimeoutError:
                    pass
            async with self._lock:
                if lifecycle.fire_alarms(state, workflow.now(), self._cal()):
                    if workflow.patched(PROJECT_IN_BACKGROUND):
                        self._index()
                        self._queue_projection()
                    else:
                        await self._settle(lifecycle.Effects())
            if not state.closed and self._should_continue_as_new():
                await self._quiesce()  # the next run starts with the read model caught up
                workflow.continue_as_new(CaseInput(case_id=state.case_id, intake=state.intake, carried=state))

        await self._quiesce()
        return CaseResult(case_id=state.case_id, final_outcome=state.final_outcome, closed_at=state.closed_at)

    # -- People act through one update ------------------------------------------------------

    @workflow.update
    async def act(self, request: a.ActionRequest) -> CaseView:
        await workflow.wait_condition(lambda: self._state is not None)
        people = await self._find_people(request) if workflow.patched(CHOOSE_PEOPLE_FIRST) else None
        async with self._lock:
            state = self._state
            assert state is not None
            if request.request_id in state.applied_requests:
                return lifecycle.view(state)  # the same request again: changes nothing
            self._refuse_unless_allowed(request)
            if people is not None:
                chosen = people.named
            else:
                chosen = await self._look_up_named_person(request.command)
            effects = lifecycle.apply(state, request, workflow.now(), self._cal(), chosen=chosen)
            ticket = None
            if workflow.patched(PROJECT_IN_BACKGROUND):
                await self._carry_out(effects, people)
                self._index()
                ticket = self._queue_projection()
            else:
                await self._settle(effects)
            self._changed = True
            result = lifecycle.view(state)
        if ticket is not None:
            # Outside the case's lock, so timers keep firing while the database is slow; still
            # awaited, so whoever acted reads their change in listings and inboxes at once.
            await self._projected(ticket)
        return result

    @act.validator
    def _validate_act(self, request: a.ActionRequest) -> None:
        # Rejected here, a request leaves no trace in history. Before the case has opened the
        # handler checks again once it can.
        state = self._state
        if state is not None and request.request_id not in state.applied_requests:
            self._refuse_unless_allowed(request)

    @workflow.query
    def view(self) -> CaseView | None:
        return None if self._state is None else lifecycle.view(self._state)

    # -- Internals ------------------------------------------------------------------------

    def _refuse_unless_allowed(self, request: a.ActionRequest) -> None:
        assert self._state is not None
        try:
            lifecycle.check(self._state, request)
        except lifecycle.Refused as refusal:
            raise ApplicationError(str(refusal), type=REFUSED, non_retryable=True) from None

    async def _find_people(self, request: a.ActionRequest) -> _People | None:
        """Look up and choose the people `request` needs, without holding the case's lock: these
        activities read the database, and while it is down the case's alarms must not wait.

        Which people an action calls for is learnt by applying it to a copy of the case, taken
        under the lock so that it is not of a change half made. None if the request is a repeat
        or is refused as things stand (the locked part answers it, with the reason). The choice
        is a forecast: if the case moves on meanwhile and the action, applied for real, calls for
        something else, the locked part chooses again (`_carry_out`)."""
        async with self._lock:
            state = self._state
            assert state is not None
            if request.request_id in state.applied_requests:
                return None
            try:
                lifecycle.check(state, request)
            except lifecycle.Refused:
                return None
            trial = state.model_copy(deep=True)
        people = _People(named=await self._look_up_named_person(request.command))  # unknown: refused here
        people.effects = lifecycle.apply(trial, request, workflow.now(), self._cal(), chosen=people.named)
        if people.effects.assign_mediator:
            people.mediator = await self._choose(CaseActivities.choose_mediator, people.effects.exclude_mediators)
        if people.effects.assign_lawyer:
            people.lawyer = await self._choose(CaseActivities.choose_lawyer)
        return people

    async def _choose(self, activity, exclude: list[str] | None = None) -> Assignee | None:
        state = self._state
        assert state is not None
        person = ChoosePersonInput(case_id=state.case_id, region_code=state.intake.region_code,
                                   dispute_type=state.intake.dispute_type, exclude=list(exclude or []))
        return await workflow.execute_activity_method(activity, person, **_ACTIVITY)

    async def _look_up_named_person(self, command: a.Command) -> Assignee | None:
        """The mediator or lawyer an action names, looked up; an unknown one refuses the action."""
        assert self._state is not None
        match command:
            case a.ReassignMediator(mediator_id=str() as person_id):
                look_up, what = CaseActivities.find_mediator, "mediator"
            case a.AssignLawyer(lawyer_id=person_id):
                look_up, what = CaseActivities.find_lawyer, "legal-aid lawyer"
            case _:
                return None
        region = self._state.intake.region_code
        found = await workflow.execute_activity_method(
            look_up, FindPersonInput(person_id=person_id, region_code=region), **_ACTIVITY
        )
        if found is None:
            raise ApplicationError(f"no active {what} '{person_id}' serves the city of region {region}",
                                   type=REFUSED, non_retryable=True)
        return found

    async def _settle(self, effects: lifecycle.Effects) -> None:
        """Carry out a change's effects, then project the case. Caller holds the lock."""
        await self._carry_out(effects)
        projection = self._snapshot()
        if projection is not None:
            await self._write(projection)
        self._index()

    async def _carry_out(self, effects: lifecycle.Effects, people: _People | None = None) -> None:
        """Assign the people a change calls for: those chosen beforehand if the change calls for
        what was forecast, else chosen now. Caller holds the lock."""
        state = self._state
        assert state is not None
        forecast = people.effects if people is not None else None
        if effects.assign_mediator:
            if forecast is not None and forecast.assign_mediator and forecast.exclude_mediators == effects.exclude_mediators:
                chosen = people.mediator
            else:
                chosen = await self._choose(CaseActivities.choose_mediator, effects.exclude_mediators)
            lifecycle.assign_mediator(state, chosen, workflow.now(), self._cal())
        if effects.assign_lawyer:
            if forecast is not None and forecast.assign_lawyer:
                chosen = people.lawyer
            else:
                chosen = await self._choose(CaseActivities.choose_lawyer)
            lifecycle.assign_lawyer(state, chosen, workflow.now(), self._cal())

    def _queue_projection(self) -> int:
        """Snapshot the case for the read model and have it written in the background, after the
        snapshots before it. Caller holds the lock. Returns the ticket `_projected` waits for."""
        projection = self._snapshot()
        if projection is not None:
            self._outgoing.append(projection)
            self._queued += 1
            if self._drainer is None or self._drainer.done():
                self._drainer = asyncio.create_task(self._drain())
        return self._queued

    async def _drain(self) -> None:
        while self._outgoing:
            await self._write(self._outgoing[0])
            self._outgoing.pop(0)
            self._sent += 1

    async def _projected(self, ticket: int | None = None) -> None:
        """Wait until the snapshots queued so far (or up to `ticket`) are written."""
        ticket = self._queued if ticket is None else ticket
        if self._sent < ticket:  # no yield when there is nothing to wait for
            await workflow.wait_condition(lambda: self._sent >= ticket)

    async def _quiesce(self) -> None:
        """Before continuing as new or completing: every handler done and every snapshot written.
        An action accepted while the last snapshots were written must finish too."""
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._projected()
            if workflow.all_handlers_finished() and self._sent >= self._queued:
                return

    def _snapshot(self) -> Projection | None:
        """What the read model lacks of the case as it stands now, taken off the case's to-do: the
        events after the last snapshot and the notifications not yet handed over. Caller holds the lock."""
        state = self._state
        assert state is not None
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
        ).model_copy(deep=True)  # a queued snapshot must not see later changes to the case's objects
        if events:
            state.projected_seq = events[-1].seq
        state.outbox = []
        return projection

    async def _write(self, projection: Projection) -> None:
        await workflow.execute_activity_method(CaseActivities.project_case, projection, **_ACTIVITY)

    def _index(self) -> None:
        """Keep Temporal's own search attributes in step, so its UI and CLI can filter cases."""
        state = self._state
        assert state is not None
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

    def _cal(self) -> BusinessCalendar:
        if self._calendar is None:
            assert self._state is not None
            self._calendar = self._calendar_for(self._state.policy)
        return self._calendar

    @staticmethod
    def _calendar_for(policy: CasePolicy) -> BusinessCalendar:
        """The case's pinned calendar; a day it does not cover counts Monday to Friday, with a warning."""
        return BusinessCalendar(
            policy.calendar,
            on_fallback=lambda day: workflow.logger.warning(
                "calendar data does not cover %s; counting Monday to Friday as working days", day.year
            ),
        )

    def _should_continue_as_new(self) -> bool:
        state = self._state
        if state is None:
            return False
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > state.policy.max_history_events
