"""A case whose data the read model refuses for good (PostgreSQL: a NUL in a text column) is not
retried forever: the refusal fails at once, the case records it on its timeline, its supervisors
are told by the case number alone, and its deadlines go on.

The API refuses such text long before (a 422): this case is started straight on Temporal with an
intake that skipped validation, as one recorded before the check would be.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from disputeflow.contracts import workflow_id_for
from disputeflow.db.engine import create_schema, make_engine
from disputeflow.db.models import CaseRecord, OutboxMessage
from disputeflow.domain.intake import Intake
from disputeflow.settings import Settings
from tests.workflows.conftest import OPERATOR, make_intake, running_driver
from tests.workflows.test_clocks import clock_named
from workflows.case import CaseWorkflowV2


async def test_a_case_the_read_model_refuses_is_reported_once_and_keeps_its_deadlines(
    time_env: WorkflowEnvironment, postgres_url: str,
) -> None:
    engine: Engine = make_engine(postgres_url)
    create_schema(engine)
    try:
        async with running_driver(time_env, engine, Settings()) as driver:
            clean = make_intake(urgency="emergency")
            dirty = Intake.model_construct(**(dict(clean) | {"description": "对方扬言\x00动手"}))
            case_id = f"T{uuid.uuid4().hex[:10]}"
            start = driver.pins.start(case_id, dirty, registered_at=await time_env.get_current_time(),
                                      registered_by=OPERATOR)
            await time_env.client.start_workflow(CaseWorkflowV2.run, start, id=workflow_id_for(case_id),
                                                 task_queue=driver.task_queue)
            handle = time_env.client.get_workflow_handle_for(CaseWorkflowV2.run, workflow_id_for(case_id))
            driver.opened.append(handle)
            await driver.advance(timedelta(minutes=61))  # past the emergency clock

            view = await handle.query(CaseWorkflowV2.view)
            refused = [e for e in view.timeline if e.type == "read_model_refused"]
            assert len(refused) == 1 and "DataError" in refused[0].data["reason"]
            assert "动手" not in refused[0].data["reason"]
            emergency = clock_named(view, "emergency_response")
            breach = next(e for e in view.timeline if e.type == "clock_breached")
            assert timedelta(0) <= breach.at - emergency.due_at < timedelta(seconds=5) and view.stage == "escalated"
            with Session(engine) as session:
                assert session.get(CaseRecord, case_id) is None
                notices = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)).all()
            assert [(n.kind, n.recipient_role) for n in notices] == [("read_model_refused", "supervisor")]
            assert "动手" not in str(notices[0].payload)
            history = await handle.fetch_history()
            failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
            assert len(failed) >= 1  # refused at once each time, not retried: one failure per snapshot
            assert all(e.activity_task_failed_event_attributes.retry_state == 2 for e in failed)  # NON_RETRYABLE_FAILURE
    finally:
        engine.dispose()
