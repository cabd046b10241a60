"""The retention sweep: a workflow a Temporal Schedule starts once a day (see `ensure_retention_schedule`).

It asks the activity to anonymise closed cases past the policy's retention period, a batch at a
time, until a batch comes back short. Its input and results are counts: nothing personal.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

BATCH = 50  # as activities.retention.BATCH: a shorter batch means none are left
MAX_BATCHES = 200  # per run; the next day's run takes the rest

SCHEDULE_ID = "disputeflow-retention-sweep"
WORKFLOW_ID = "disputeflow-retention-sweep"


@workflow.defn(name="RetentionSweep")
class RetentionSweepWorkflow:
    @workflow.run
    async def run(self) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            erased = await workflow.execute_activity(
                "erase_expired_cases", start_to_close_timeout=timedelta(minutes=5), result_type=int,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10))
            total += erased
            if erased < BATCH:
                break
        return total
