"""The suite runs twice in CI, the second time with the worker's workflow cache off
(DISPUTEFLOW_WORKER_MAX_CACHED_WORKFLOWS=0): this checks which of the two the worker really runs."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import TaskQueueKind

from disputeflow.contracts import workflow_id_for
from disputeflow.temporal import connect
from tests.faults.conftest import FaultStack, assert_allowed

pytestmark = pytest.mark.faults


async def test_the_worker_runs_with_the_configured_workflow_cache(stack: FaultStack) -> None:
    case_id = await stack.open_case()
    response = await stack.http.post(f"/cases/{case_id}/actions/send_to_mediation", json={}, headers=stack.auth())
    assert assert_allowed(response) == 200

    client = await connect(stack.settings)
    history = await client.get_workflow_handle(workflow_id_for(case_id)).fetch_history()
    kinds = [e.workflow_task_scheduled_event_attributes.task_queue.kind for e in history.events
             if e.HasField("workflow_task_scheduled_event_attributes")]
    assert len(kinds) > 2, kinds  # opened, the action, the mediator found, the snapshots
    sticky = [k for k in kinds if k == TaskQueueKind.TASK_QUEUE_KIND_STICKY]
    if stack.settings.worker_max_cached_workflows == 0:
        assert sticky == [], "without a cache every workflow task goes to the normal queue (and replays)"
    else:
        assert sticky, "with a cache the worker keeps the case and takes its next tasks on its sticky queue"
