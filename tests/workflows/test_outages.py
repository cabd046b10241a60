"""A case while its database is partly down: timers go on, and nothing half-done ever shows.

Real outages of real tables: the read model's `outbox` dropped (every projection fails until it is
back) and the `mediators` table renamed away (choosing a mediator fails until it is back).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateHandle, WorkflowUpdateStage
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.case import CaseActivities
from disputeflow.contracts import CaseInput, CaseResult, workflow_id_for
from disputeflow.db.models import CaseTaskRecord
from disputeflow.domain.actions import ActionRequest
from disputeflow.domain.case import CaseView
from disputeflow.settings import DEFAULT_POLICY_FILE
from tests.workflows.conftest import (
    OPERATOR,
    SUPERVISOR,
    CaseDriver,
    make_intake,
    read_model_back,
    read_model_down,
)
from tests.workflows.test_clocks import open_emergency
from workflows.case import CaseWorkflow

SECOND = timedelta(seconds=1)


def mediators_away(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE mediators RENAME TO mediators_away"))


def mediators_back(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE mediators_away RENAME TO mediators"))


def request(actor, command: dict) -> ActionRequest:
    return ActionRequest.model_validate({"request_id": uuid.uuid4().hex, "actor": actor.model_dump(),
                                         "command": command})


async def accepted(handle: WorkflowHandle, req: ActionRequest) -> WorkflowUpdateHandle[CaseView]:
    return await handle.start_update(CaseWorkflow.act, req, id=req.request_id,
                                     wait_for_stage=WorkflowUpdateStage.ACCEPTED)


def task_rows(engine: Engine, case_id: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(CaseTaskRecord).where(CaseTaskRecord.case_id == case_id))
        return sorted((row.kind, row.status) for row in rows)


async def test_the_read_model_never_shows_an_action_half_done(driver: CaseDriver) -> None:
    """A snapshot for the read model is taken at the end of a change, never in the middle of one:
    while an action waits for a mediator to be chosen, what is written is the case before it."""
    engine = driver.engine
    handle, case_id, clock = await open_emergency(driver)

    read_model_down(engine)
    await driver.advance(timedelta(minutes=31))  # the warning fires; its projection waits
    extend = await accepted(handle, request(SUPERVISOR, {
        "type": "extend_clock", "clock_id": clock.clock_id, "by": {"amount": 10, "unit": "calendar_days"},
        "reason": "当事人住院"}))
    await driver.advance(3 * SECOND)
    mediators_away(engine)
    send = await accepted(handle, request(OPERATOR, {"type": "send_to_mediation"}))
    await driver.advance(3 * SECOND)  # the action is half made: in mediation, no mediator chosen yet

    read_model_back(engine)
    await driver.advance(timedelta(minutes=1))  # past the activity's next retry
    assert (await extend.result()).stage == "triage"
    assert driver.record(case_id).stage == "triage"  # not the half-made mediation
    assert task_rows(engine, case_id) == [("triage", "open")]

    mediators_back(engine)
    await driver.advance(timedelta(minutes=1))
    done = await send.result()
    assert done.stage == "mediation" and done.mediator is not None
    record = driver.record(case_id)
    assert (record.stage, record.mediator_id) == ("mediation", done.mediator.id)
    assert task_rows(engine, case_id) == [("hold_mediation_session", "open"), ("triage", "done")]
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def test_an_action_waiting_for_a_mediator_does_not_hold_up_a_deadline(driver: CaseDriver) -> None:
    """Choosing a mediator happens before the action takes the case: while it cannot be chosen, the
    case's clock still warns and breaches on time, and the action is then judged on the case as it
    has become (here: refused, as the breach escalated the case meanwhile)."""
    engine = driver.engine
    handle, case_id, clock = await open_emergency(driver)

    mediators_away(engine)
    send = await accepted(handle, request(OPERATOR, {"type": "send_to_mediation"}))
    await driver.advance(timedelta(minutes=61))
    during = await driver.view(handle)
    assert during.stage == "escalated" and during.breached
    breached = next(e for e in during.timeline if e.type == "clock_breached")
    assert timedelta(0) <= breached.at - clock.due_at < 5 * SECOND  # on time, not when the table is back
    assert driver.record(case_id).stage == "escalated"  # the read model was reachable all along

    mediators_back(engine)
    await driver.advance(timedelta(minutes=1))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await send.result()
    assert "cannot send a case to mediation while the case is in stage 'escalated'" in str(refused.value.cause)

    # The supervisor now hands it to the least-loaded mediator, chosen before the lock as usual.
    done = await driver.act(handle, SUPERVISOR, {"type": "reassign_mediator", "reason": "紧急事项，尽快调解"})
    assert done.stage == "mediation" and done.mediator is not None
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})
    assert (await handle.result()).final_outcome is not None
    await driver.save_history(handle, "action_waits_for_a_mediator_outside_the_lock")


async def test_a_case_registered_while_the_read_model_is_down_keeps_its_deadlines(driver: CaseDriver) -> None:
    """The new case's first snapshot waits for the database in the background: its clocks start and
    fire on time meanwhile, and the read model gets the whole case, in order, once it is back."""
    engine = driver.engine
    read_model_down(engine)
    handle, case_id, clock = await open_emergency(driver)
    await driver.advance(timedelta(minutes=61))

    during = await driver.view(handle)
    assert during.stage == "escalated" and during.breached
    breached = next(e for e in during.timeline if e.type == "clock_breached")
    assert timedelta(0) <= breached.at - clock.due_at < 5 * SECOND
    assert driver.record(case_id) is None  # nothing written yet

    read_model_back(engine)
    await driver.advance(timedelta(minutes=1))
    record = driver.record(case_id)
    assert record is not None and (record.stage, record.breached) == ("escalated", True)
    assert driver.event_types(case_id) == [e.type for e in during.timeline]
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "警方已处置"})
    assert (await handle.result()).final_outcome is not None
    await driver.save_history(handle, "opened_during_outage")


async def test_a_mediator_chosen_beforehand_is_chosen_again_when_the_case_moved_on(driver: CaseDriver) -> None:
    """Two reassignments chosen at the same time, while the case had no mediator: the one applied
    second must leave the first one's mediator (the exclusion it was chosen without), so it does not
    reuse its forecast but chooses again under the lock."""
    engine = driver.engine
    handle = await driver.open()
    await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    await driver.act(handle, SUPERVISOR, {"type": "escalate", "reason": "当事人情绪激动"})

    mediators_away(engine)
    first = await accepted(handle, request(SUPERVISOR, {"type": "reassign_mediator", "reason": "换人"}))
    second = await accepted(handle, request(SUPERVISOR, {"type": "reassign_mediator", "reason": "再换人"}))
    await driver.advance(3 * SECOND)
    mediators_back(engine)
    await driver.advance(timedelta(minutes=1))
    results = [await first.result(), await second.result()]
    assert all(r.stage == "mediation" and r.mediator is not None for r in results)
    final = await driver.view(handle)
    released = [e.data["mediator_id"] for e in final.timeline if e.type == "mediator_released"]
    assigned = [e.data["mediator_id"] for e in final.timeline if e.type == "mediator_assigned"]
    # the last reassignment released the mediator the one before it had assigned, and chose another
    assert released[-1] == assigned[-2] and assigned[-1] != assigned[-2]
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


@workflow.defn(name="CaseWorkflow")
class CaseWorkflowToldToContinue(CaseWorkflow):
    """The real workflow, continuing as new when told (instead of at thousands of events)."""

    def __init__(self) -> None:
        super().__init__()
        self._told = False

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseResult:
        return await super().run(inp)

    @workflow.signal
    def continue_now(self) -> None:
        self._told = True

    def _should_continue_as_new(self) -> bool:
        return self._told and self._state is not None and self._state.runs == 1


async def test_continue_as_new_waits_for_an_action_accepted_meanwhile(driver: CaseDriver) -> None:
    """Continuing as new waits for the read model; an action accepted during that wait finishes in
    the old run, whole, before the case moves on to the next one."""
    env, engine = driver.env, driver.engine
    task_queue = f"outages-{uuid.uuid4().hex[:8]}"
    worker = Worker(env.client, task_queue=task_queue, workflows=[CaseWorkflowToldToContinue],
                    activities=CaseActivities(engine, DEFAULT_POLICY_FILE).all(),
                    activity_executor=ThreadPoolExecutor(4), workflow_runner=UnsandboxedWorkflowRunner())
    async with worker:
        case_id = f"T{uuid.uuid4().hex[:10]}"
        handle = await env.client.start_workflow(
            CaseWorkflowToldToContinue.run,
            CaseInput(case_id=case_id, intake=make_intake(urgency="emergency", description="对方扬言要动刀")),
            id=workflow_id_for(case_id), task_queue=task_queue)
        first_run = handle.result_run_id
        await driver.view(handle)

        read_model_down(engine)
        await driver.advance(timedelta(minutes=31))  # the warning fires; its projection waits
        await handle.signal(CaseWorkflowToldToContinue.continue_now)  # waits behind that projection
        await driver.advance(5 * SECOND)
        mediators_away(engine)
        send = await accepted(handle, request(OPERATOR, {"type": "send_to_mediation"}))
        await driver.advance(5 * SECOND)
        read_model_back(engine)  # the projection is written; the action still waits for a mediator
        await driver.advance(timedelta(minutes=1))
        assert (await handle.describe()).run_id == first_run  # not continued with the action half done

        mediators_back(engine)
        await driver.advance(timedelta(minutes=1))
        done = await send.result()
        assert done.stage == "mediation" and done.mediator is not None
        for _ in range(50):
            current = env.client.get_workflow_handle(handle.id)
            if (await current.describe()).run_id != first_run:
                break
            await driver.advance(SECOND)
        assert (await current.describe()).run_id != first_run
        carried = await current.query(CaseWorkflowToldToContinue.view)
        assert carried.stage == "mediation" and carried.mediator == done.mediator
        assert driver.record(case_id).mediator_id == done.mediator.id
        await current.terminate("test finished")
