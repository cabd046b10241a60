"""Background jobs for work too long for a request: whole-log audit verification.

`POST /audit/verify` starts a job (or, while one is running, answers with that one: the chain is
walked once at a time) and returns 202 with its id; `GET /audit/jobs/{job_id}` reports its progress
(`done` of `total`) and, once finished, its result. The job runs in a thread of the API process,
with its own database session, in batches (memory does not grow with the log).

Jobs are kept in the process's memory, the last `KEEP` of them: a restart forgets them (the chain
is unchanged; start another). Only the user who started a job reads it: someone else's id is 404.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, Field

from api.errors import ApiError

log = logging.getLogger(__name__)

KEEP = 100


class JobNotFound(ApiError):
    status_code = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found among yours")


class Job(BaseModel):
    job_id: str
    kind: Literal["audit_verify"]
    status: Literal["running", "done", "failed"]
    started_by: str
    started_at: datetime
    finished_at: datetime | None = None
    done: int = Field(default=0, description="Items processed so far (audit entries checked)")
    total: int | None = Field(default=None, description="Items to process, as counted when the job started")
    result: dict[str, Any] | None = Field(default=None, description="When done: the job's answer")
    error: str | None = Field(default=None, description="When failed: what went wrong (no data)")


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self, kind: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.kind == kind and j.status == "running"), None)

    def get(self, job_id: str, user_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.started_by != user_id:
            raise JobNotFound(job_id)
        return job

    def start(self, kind: Literal["audit_verify"], user_id: str, now: datetime,
              work: Callable[[Job], dict[str, Any]], clock: Callable[[], datetime]) -> Job:
        """Run `work(job)` in a thread; it updates `job.done` / `job.total` as it goes and returns the result."""
        job = Job(job_id=uuid.uuid4().hex, kind=kind, status="running", started_by=user_id, started_at=now)
        self._jobs[job.job_id] = job
        while len(self._jobs) > KEEP:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].status == "running":
                break
            del self._jobs[oldest]

        async def run() -> None:
            try:
                job.result = await asyncio.to_thread(work, job)
                job.status = "done"
            except Exception as exc:  # noqa: BLE001 - recorded on the job, for whoever started it
                log.warning("background job %s (%s) failed: %s", job.job_id, kind, type(exc).__name__)
                job.status, job.error = "failed", f"{type(exc).__name__}: the job could not finish; start another"
            job.finished_at = clock()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def jobs_of(request: Request) -> JobRegistry:
    state = request.app.state
    if getattr(state, "jobs", None) is None:
        state.jobs = JobRegistry()
    return state.jobs
