"""A long case continues as new and keeps its state, its pending clocks and its seen request ids."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from disputeflow.settings import Settings
from tests.workflows.conftest import OPERATOR, mediator, running_driver


async def test_long_case_continues_as_new_with_its_clocks(
    time_env: WorkflowEnvironment, sqlite_engine: Engine, early_continue_as_new_policy: Path
) -> None:
    settings = Settings(policy_file=early_continue_as_new_policy)
    async with running_driver(time_env, sqlite_engine, settings) as driver:
        handle = await driver.open()
        view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"}, request_id="first")
        me = mediator(view.mediator.id)
        first_run = (await handle.describe()).run_id
        for n in range(12):
            view = await driver.act(handle, me, {"type": "record_mediation_session", "outcome": "partial"},
                                    request_id=f"session-{n}")
        # wait until the new run has taken over
        description = await handle.describe()
        assert description.run_id != first_run, "the case should have continued as new"
        old = await time_env.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
        assert old.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW

        view = await driver.view(handle)
        assert view.stage == "mediation" and len(view.mediation.sessions) == 12
        assert [e.seq for e in view.timeline] == list(range(1, len(view.timeline) + 1))
        # a request seen in the first run is still recognised: nothing changes
        again = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"}, request_id="first")
        assert again.timeline == view.timeline
        # the mediation clock started in the first run still fires in the new one
        await driver.advance(timedelta(days=31))
        view = await driver.view(handle)
        assert view.stage == "escalated"
        assert "clock_breached" in [e.type for e in view.timeline]
        assert driver.record(view.case_id).stage == "escalated"
        await driver.act(handle, OPERATOR, {"type": "withdraw", "reason": "test over"})
        await driver.save_history(handle, "continue_as_new_first_run", run_id=first_run)
        await driver.save_history(handle, "continue_as_new_last_run")
