"""An action right after a workflow task that issued nothing, on a worker that replays every task.

Temporal's Core (v1 history chunking) may hand such an action to a worker replaying the case from
scratch in the same activation as the result of the write before it, and a later replay of the same
history in two activations. The case's commands must not depend on it (patch `write-after-rearming`,
docs/operations.md): here the second action's workflow task replays the first's, and a case whose
commands had come out in another order fails that replay with a nondeterminism error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from disputeflow.settings import Settings
from tests.workflows.conftest import OPERATOR, CaseDriver, running_driver

QUIET_WAIT_SECONDS = 10.0


@pytest.fixture
async def replaying_driver(time_env: WorkflowEnvironment, sqlite_engine: Engine) -> AsyncIterator[CaseDriver]:
    async with running_driver(time_env, sqlite_engine, Settings(worker_max_cached_workflows=0)) as case_driver:
        yield case_driver


async def wait_until_quiet_after_a_write(handle: WorkflowHandle) -> list[EventType.ValueType]:
    """Until the case's last workflow task took a write's result and issued nothing (no activity
    pending): the moment at which an action arrives after an empty task. (On the time-skipping
    server a query first makes that task likely. Without the patch, this test failed each time it
    was tried, in 12 s; with it, it passes in about 2 s.)"""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while True:
        types = [e.event_type for e in (await handle.fetch_history()).events]
        pending = (await handle.describe()).raw_description.pending_activities
        if (not pending and types[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                and EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED in types[types.index(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):]):
            return types
        assert time.monotonic() < deadline, f"the case did not settle: {[EventType.Name(t) for t in types[-6:]]}"
        await asyncio.sleep(0.05)


async def test_an_action_after_an_empty_workflow_task_replays_the_same_way(replaying_driver: CaseDriver) -> None:
    driver = replaying_driver
    for _ in range(5):
        handle = await driver.open(category="consultation", dispute_type="contract_debt", special_groups=[])
        assert (await driver.view(handle)).stage == "triage"
        await wait_until_quiet_after_a_write(handle)
        view = await asyncio.wait_for(
            driver.act(handle, OPERATOR, {"type": "answer_consultation", "answer": "可向劳动仲裁委申请仲裁"}), QUIET_WAIT_SECONDS)
        assert view.stage == "follow_up"
        view = await asyncio.wait_for(
            driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 5}), QUIET_WAIT_SECONDS)
        assert view.stage == "closed"
        await asyncio.wait_for(handle.result(), QUIET_WAIT_SECONDS)
        types = [e.event_type for e in (await handle.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
        assert EventType.EVENT_TYPE_MARKER_RECORDED in types  # the patched code ran
