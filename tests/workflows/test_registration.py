"""A case's clocks start when the call was registered, not when a worker got to it.

On the real dev server (the time-skipping server does not move its clock while a workflow task
waits for a worker): the case is registered while no worker polls its task queue; the worker comes
a few seconds later. The emergency clock is shortened by the policy file to 10.8 seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from disputeflow.contracts import workflow_id_for
from disputeflow.db.engine import write_session
from disputeflow.db.reference import seed_reference
from disputeflow.pinning import PolicyPins
from disputeflow.settings import DEFAULT_POLICY_FILE, DEFAULT_REFERENCE_FILE, Settings
from disputeflow.temporal import SEARCH_ATTRIBUTES
from tests.conftest import installed_binary
from tests.workflows.conftest import OPERATOR, make_intake
from tests.workflows.test_clocks import clock_named
from worker import build_worker
from workflows.case import CaseWorkflowV2

WORKER_LATE_BY = 3.0  # seconds between the call and the first worker


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=installed_binary("temporal"),
                                                search_attributes=SEARCH_ATTRIBUTES,
                                                data_converter=pydantic_data_converter)
    async with env:
        yield env


@pytest.fixture
def fast_emergency_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.toml"
    text = re.sub(r'(clock = "emergency_response"\n(?:.*\n){2})target = \{ amount = 1, unit = "calendar_hours" \}',
                  r'\1target = { amount = 0.003, unit = "calendar_hours" }', DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    assert "0.003" in text
    policy.write_text(text, encoding="utf-8")
    return policy


async def test_an_emergency_registered_while_no_worker_runs_is_due_from_its_registration(
    dev_env: WorkflowEnvironment, sqlite_engine: Engine, fast_emergency_policy: Path,
) -> None:
    with write_session(sqlite_engine) as session:
        seed_reference(session, DEFAULT_REFERENCE_FILE)
    settings = Settings(policy_file=fast_emergency_policy)
    task_queue = f"late-{uuid.uuid4().hex[:8]}"
    case_id = f"T{uuid.uuid4().hex[:10]}"
    registered_at = datetime.now(UTC)
    start = PolicyPins(fast_emergency_policy).start(case_id, make_intake(urgency="emergency", description="对方扬言要动手"),
                                                    registered_at=registered_at, registered_by=OPERATOR)
    await dev_env.client.start_workflow(CaseWorkflowV2.run, start, id=workflow_id_for(case_id), task_queue=task_queue)
    handle = dev_env.client.get_workflow_handle_for(CaseWorkflowV2.run, workflow_id_for(case_id))
    late_until = time.monotonic() + WORKER_LATE_BY
    while time.monotonic() < late_until:  # nobody picks the case up meanwhile
        await asyncio.sleep(0.1)

    async with build_worker(dev_env.client, settings, sqlite_engine, task_queue=task_queue):
        view = await handle.query(CaseWorkflowV2.view)
        emergency = clock_named(view, "emergency_response")
        assert view.opened_at == registered_at == emergency.started_at
        assert emergency.due_at == registered_at + timedelta(hours=0.003)
        for _ in range(150):  # 15 s at most
            view = await handle.query(CaseWorkflowV2.view)
            if view.breached:
                break
            await asyncio.sleep(0.1)
        breached = next(e for e in view.timeline if e.type == "clock_breached")
        assert timedelta(0) <= breached.at - emergency.due_at < timedelta(seconds=2)  # a loaded CI machine, cache off
        await handle.terminate("test finished")
