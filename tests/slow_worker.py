"""`python -m tests.slow_worker`: the real worker process (worker.run, its settings, its signal
handling, its exit) with one more workflow whose only activity takes a while, for the graceful-shutdown test.

The activity writes `<DIR>/started` when it begins and `<DIR>/finished` when it ends (or
`<DIR>/cancelled` if the worker cancels it), DIR being the `SLOW_ACTIVITY_DIR` environment variable;
it runs for `SLOW_ACTIVITY_SECONDS` (default 1.5).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn
async def slow_step() -> str:
    folder = Path(os.environ["SLOW_ACTIVITY_DIR"])
    (folder / "started").touch()
    try:
        await asyncio.sleep(float(os.environ.get("SLOW_ACTIVITY_SECONDS", "1.5")))
    except asyncio.CancelledError:
        (folder / "cancelled").touch()
        raise
    (folder / "finished").touch()
    return "finished"


@workflow.defn
class SlowWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            slow_step, start_to_close_timeout=timedelta(seconds=30), retry_policy=RetryPolicy(maximum_attempts=1))


def main() -> None:
    import worker
    from tests.slow_worker import SlowWorkflow, slow_step  # by module name, for the sandbox

    class WithSlowStep(worker.CaseActivities):
        def all(self) -> list:
            return [*super().all(), slow_step]

    worker.CaseActivities = WithSlowStep
    worker.WORKFLOWS.append(SlowWorkflow)
    worker.run()  # as `python worker.py` runs


if __name__ == "__main__":
    main()
