"""The retention sweep's Temporal Schedule: created at worker start, once (idempotent), daily, starting
the sweep workflow on the worker's task queue. On a dev server: the time-skipping one has no schedules."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from tests.conftest import installed_binary
from worker import ensure_retention_schedule
from workflows.retention import SCHEDULE_ID


async def test_the_schedule_is_created_once_and_starts_the_sweep_daily() -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=installed_binary("temporal"),
                                                dev_server_extra_args=["--headless"])
    try:
        queue = f"retention-{uuid.uuid4().hex[:6]}"
        assert await ensure_retention_schedule(env.client, queue) is True
        assert await ensure_retention_schedule(env.client, queue) is False  # a second worker start: no change
        described = await env.client.get_schedule_handle(SCHEDULE_ID).describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "RetentionSweep" and action.task_queue == queue
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(days=1)]
    finally:
        await env.shutdown()
