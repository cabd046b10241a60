"""A case while its database is partly down: timers go on, and nothing half-done ever shows.

Real outages of real tables: the read model's `outbox` dropped (every projection fails until it is
back) and the `mediators` table renamed away (choosing a mediator fails until it is back).
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import WorkflowHandle, WorkflowUpdateHandle, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.case import CaseActivities
from disputeflow.contracts import CaseResult, CaseStart, workflow_id_for
from disputeflow.db.models import CaseTaskRecord
from disputeflow.domain.actions import ActionRequest
from disputeflow.domain.case import CaseView
from disputeflow.settings import DEFAULT_POLICY_FILE, Settings
from tests.workflows.conftest import (
    OPERATOR,
    SUPERVISOR,
    CaseDriver,
    make_intake,
    read_model_back,
    read_model_down,
    running_driver,
)
from tests.workflows.test_clocks import clock_named, open_emergency
from workflows.case import CaseWorkflowV2

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
    return await handle.start_update(CaseWorkflowV2.act, req, id=req.request_id,
                                     wait_for_stage=WorkflowUpdateStage.ACCEPTED)


def task_rows(engine: Engine, case_id: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(CaseTaskRecord).where(CaseTaskRecord.case_id == case_id))
        return sorted((row.kind, row.status) for row in rows)


async def test_the_read_model_shows_each_change_whole_and_in_order(driver: CaseDriver) -> None:
    """A snapshot for the read model is taken at the end of a change, never in the middle of one.
    Sending a case to mediation is one change (in mediation, no mediator yet: the supervisor's
    'assign a mediator' task) and finding the mediator another, a system step of its own."""
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
    await driver.advance(3 * SECOND)

    read_model_back(engine)
    await driver.advance(timedelta(minutes=1))  # past the activity's next retry
    assert (await extend.result()).stage == "mediation"  # answered without waiting for the mediator
    record = driver.record(case_id)
    assert (record.stage, record.mediator_id) == ("mediation", None)
    assert task_rows(engine, case_id) == [("assign_mediator", "open"), ("triage", "done")]

    mediators_back(engine)
    await driver.advance(timedelta(minutes=1))
    done = await send.result()
    assert done.stage == "mediation" and done.mediator is not None
    record = driver.record(case_id)
    assert (record.stage, record.mediator_id) == ("mediation", done.mediator.id)
    assert task_rows(engine, case_id) == [("assign_mediator", "done"), ("hold_mediation_session", "open"),
                                          ("triage", "done")]
    sent, assigned = (next(e for e in done.timeline if e.type == kind) for kind in ("sent_to_mediation", "mediator_assigned"))
    assert sent.actor is not None and assigned.actor is None and sent.seq < assigned.seq  # both steps, in order
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


@pytest.fixture
def one_hour_mediation_policy(tmp_path: Path) -> Path:
    """The shipped policy with mediation due in one hour (warned at 30 and 48 minutes)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(re.sub(r'(clock = "mediation_conclusion"\n(?:.*\n){2})target = \{ amount = 30, unit = "calendar_days" \}',
                             r'\1target = { amount = 1, unit = "calendar_hours" }',
                             DEFAULT_POLICY_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    assert 'amount = 1, unit = "calendar_hours"' in policy.read_text(encoding="utf-8")
    return policy


async def test_looking_for_a_mediator_does_not_hold_up_a_deadline(
    time_env: WorkflowEnvironment, sqlite_engine: Engine, one_hour_mediation_policy: Path,
) -> None:
    """While no mediator can be chosen, the case is in mediation with its clock running: it warns and
    breaches on time, and the breach escalates the case. The mediator found afterwards is for a
    stage the case has left, so it is not assigned; the action itself was applied."""
    async with running_driver(time_env, sqlite_engine, Settings(policy_file=one_hour_mediation_policy)) as driver:
        engine = driver.engine
        handle = await driver.open()
        mediators_away(engine)
        send = await accepted(handle, request(OPERATOR, {"type": "send_to_mediation"}))
        await driver.advance(timedelta(minutes=61))
        during = await driver.view(handle)
        assert during.stage == "escalated" and during.breached and during.mediator is None
        mediation = clock_named(during, "mediation_conclusion")
        fired = [e for e in during.timeline if e.data.get("clock_id") == mediation.clock_id
                 and e.type in ("clock_warning", "clock_breached")]
        assert [e.type for e in fired] == ["clock_warning", "clock_warning", "clock_breached"]
        due = [w.at for w in mediation.warnings] + [mediation.due_at]
        assert all(timedelta(0) <= e.at - at < 5 * SECOND for e, at in zip(fired, due, strict=True))
        assert driver.record(driver_case_id(during)).stage == "escalated"  # the read model was reachable all along

        mediators_back(engine)
        await driver.advance(timedelta(minutes=1))
        answered = await send.result()
        assert answered.stage == "escalated" and answered.mediator is None
        assert not [e for e in answered.timeline if e.type == "mediator_assigned"]

        # The supervisor now hands it to the least-loaded other mediator, a search like any other.
        done = await driver.act(handle, SUPERVISOR, {"type": "reassign_mediator", "reason": "紧急事项，尽快调解"})
        assert done.stage == "mediation" and done.mediator is not None
        await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})
        assert (await handle.result()).final_outcome is not None
        await driver.save_history(handle, "mediator_search_outlasted_by_a_breach")


def driver_case_id(view: CaseView) -> str:
    return view.case_id


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


async def test_two_reassignments_at_once_each_exclude_the_mediator_before_them(driver: CaseDriver) -> None:
    """Two reassignments sent together while no mediator can be chosen: the second is applied to the
    case as the first left it, so it waits for a mediator of its own that is not the first one's
    (the first one's search, overtaken, assigns no one)."""
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
    overtaken, done = await first.result(), await second.result()
    assert overtaken.stage == done.stage == "mediation" and done.mediator is not None
    final = await driver.view(handle)
    assigned = [e.data["mediator_id"] for e in final.timeline if e.type == "mediator_assigned"]
    assert len(assigned) == 2  # the first mediator, then the second reassignment's: none for the overtaken search
    assert final.mediator.id == assigned[-1] != assigned[0]
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


@workflow.defn(name="CaseWorkflowV2")
class CaseWorkflowToldToContinue(CaseWorkflowV2):
    """The real workflow, continuing as new when told (instead of at thousands of events)."""

    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        super().__init__(start)
        self._told = False

    @workflow.run
    async def run(self, start: CaseStart) -> CaseResult:
        return await super().run(start)

    @workflow.signal
    def continue_now(self) -> None:
        self._told = True

    def _should_continue_as_new(self) -> bool:
        return self._told and self._state.runs == 1


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
        start = driver.pins.start(case_id, make_intake(urgency="emergency", description="对方扬言要动刀"),
                                  registered_at=await env.get_current_time(), registered_by=OPERATOR)
        handle = await env.client.start_workflow(CaseWorkflowToldToContinue.run, start, id=workflow_id_for(case_id),
                                                 task_queue=task_queue)
        first_run = handle.result_run_id
        await driver.view(handle)

        read_model_down(engine)
        await driver.advance(timedelta(minutes=31))  # the warning fires; its projection waits
        await handle.signal(CaseWorkflowToldToContinue.continue_now)  # waits behind that projection
        await driver.advance(5 * SECOND)
        mediators_away(engine)
        send = await accepted(handle, request(OPERATOR, {"type": "send_to_mediation"}))
        await driver.advance(5 * SECOND)
        read_model_back(engine)  # the projections are written; the case still waits for a mediator
        await driver.advance(timedelta(minutes=1))
        assert (await handle.describe()).run_id == first_run  # not continued while a mediator is being found

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
