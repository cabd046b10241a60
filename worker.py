"""The worker: runs case workflows and their activities. `python worker.py` (make run starts it)."""

from __future__ import annotations

import asyncio
import compileall
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine, make_url
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker
from temporalio.api.enums.v1 import CommandType
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
# The sandbox's instance class is not exported; tests/test_worker_runner.py fails if it moves.
from temporalio.worker.workflow_sandbox._runner import _Instance as _SandboxedInstance

from activities.case import CaseActivities
from activities.retention import RetentionActivities
from disputeflow.codec import EncryptionCodec
from disputeflow.settings import Settings, get_settings
from workflows.case import CaseWorkflowV2
from workflows.legacy.case import CaseWorkflow
from workflows.retention import SCHEDULE_ID, WORKFLOW_ID, RetentionSweepWorkflow

log = logging.getLogger("disputeflow.worker")

# Pure third-party modules the workflow code uses: import them once, not in every workflow run.
PASSTHROUGH_MODULES = ("pydantic", "pydantic_core", "phonenumbers", "stdnum", "holidays", "sqlalchemy", "sqlmodel")
# New cases start CaseWorkflowV2; cases started before it run on to their end as CaseWorkflow.
CASE_WORKFLOWS = [CaseWorkflowV2, CaseWorkflow]
WORKFLOWS = [*CASE_WORKFLOWS, RetentionSweepWorkflow]
RETENTION_SWEEP_EVERY = timedelta(days=1)


_SCHEDULE_ACTIVITY = CommandType.COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK


class _ContextOutsideTheSandbox(_SandboxedInstance):
    """A sandboxed workflow instance that answers the payload codec's question "whose payload is
    this?" without entering the sandbox.

    The SDK asks it for every payload of every activation (about 130 times in a replay of 150
    events), and the sandbox answers each by `exec` under its import hooks: a quarter of a replay's
    time and of a workflow task's. The answer is the same method of the same workflow instance,
    called directly; it only reads the instance's workflow info and pending activities (no workflow
    code runs). Only for the workflow's own payloads and its activities' (all our workflows have):
    a child workflow, an external signal or a Nexus operation still asks inside the sandbox."""

    def _inner(self) -> Any:
        in_sandbox = self.globals_and_locals.get("__temporal_in_sandbox")
        return None if in_sandbox is None else in_sandbox.instance

    def get_serialization_context(self, command_info: Any) -> Any:
        inner = self._inner()
        if inner is not None and (command_info is None or command_info.command_type == _SCHEDULE_ACTIVITY):
            return inner.get_serialization_context(command_info)
        return super().get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        inner = self._inner()
        if inner is not None and (command_info is None or command_info.command_type == _SCHEDULE_ACTIVITY):
            return inner.get_external_store_context(command_info)
        return super().get_external_store_context(command_info)


class _ValidatedOnce(SandboxedWorkflowRunner):
    """The sandbox, validating each workflow type once per runner rather than once per worker, and
    answering serialization contexts outside it (`_ContextOutsideTheSandbox`).

    Every worker built on a runner first creates a throw-away instance of each of its workflow
    types to validate it; a `Replayer` builds a worker for every replay, so an auditor's replay of
    one case paid for three such instances (one per type) before its own. A runner kept for the
    process (`disputeflow.history`'s replayer) now pays for them on its first replay only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._validated: set[type] = set()

    def prepare_workflow(self, defn: Any) -> None:
        if defn.cls not in self._validated:
            super().prepare_workflow(defn)
            self._validated.add(defn.cls)

    def create_instance(self, det: Any) -> Any:
        return _ContextOutsideTheSandbox(det, self.runner_class, self.restrictions)


def workflow_runner() -> SandboxedWorkflowRunner:
    return _ValidatedOnce(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES))


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        from disputeflow import logs

        info = activity.info()
        with logs.bind(workflow_id=info.workflow_id, case_id=logs.case_id_of(info.workflow_id)):
            return await self.next.execute_activity(input)


class LogContext(Interceptor):
    """Every log line an activity writes, from whatever module, carries its workflow and case id."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(super().intercept_activity(next))


WORKFLOW_SOURCES = Path(__file__).resolve().parent / "workflows"


def precompile_workflows() -> None:
    """Cache the bytecode of the workflow modules, once.

    The sandbox imports the workflow modules afresh for every workflow run it starts (a new case,
    or one evicted from the cache). Without their bytecode on disk (PYTHONDONTWRITEBYTECODE=1, as
    on the development machines and in many container images) every such import compiles
    `workflows/case.py` from its source: in a py-spy profile of 1,000 cases opening, 40% of the
    worker process's CPU, against 8% with the bytecode there. Python still *reads* cached bytecode
    when it may not write it; compileall writes it regardless. A read-only tree goes without."""
    try:
        compileall.compile_dir(WORKFLOW_SOURCES, quiet=2)
    except OSError as exc:  # pragma: no cover - a read-only installation
        log.warning("could not cache the workflows' bytecode (%s): each new workflow run compiles them",
                    type(exc).__name__)


ACTIVITY_THREADS = 16


def build_worker(client: Client, settings: Settings, engine: Engine, *, task_queue: str | None = None,
                 workflow_task_slots: int | None = None, activity_slots: int | None = None) -> Worker:
    """`workflow_task_slots`, `activity_slots`: how many workflow tasks and activities the worker runs
    at once (None: the SDK's defaults); see docs/operations.md, "Worker settings"."""
    precompile_workflows()
    codec = client.data_converter.payload_codec
    case_keys = codec.case_keys if isinstance(codec, EncryptionCodec) else None
    if case_keys is not None and case_keys.url is not None and make_url(case_keys.url) != engine.url:
        # The cases' data keys must live in the read model's database: every process reads them there.
        raise ValueError("the worker's data converter reads the cases' data keys from another database than "
                         "the read model's: build both from the same settings")
    activities = CaseActivities(engine, settings.policy_file, case_keys=case_keys)
    cached = settings.worker_max_cached_workflows  # None: the SDK's default; 0: every task replays
    cache = {} if cached is None else {"max_cached_workflows": cached}
    retention = RetentionActivities(engine, settings.policy_file)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities.all() + retention.all(),
        activity_executor=ThreadPoolExecutor(max_workers=ACTIVITY_THREADS),
        **({} if workflow_task_slots is None else {"max_concurrent_workflow_tasks": workflow_task_slots}),
        **({} if activity_slots is None else {"max_concurrent_activities": activity_slots}),
        workflow_runner=workflow_runner(),
        # On SIGTERM running activities may finish (and report) before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_seconds),
        interceptors=[LogContext()],
        **cache,
    )


async def ensure_retention_schedule(client: Client, task_queue: str) -> bool:
    """Create the daily retention sweep's Schedule unless it exists (every worker start asks; the
    first creates it). True if this call created it. A server without schedules is logged, not fatal."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
    )
    from temporalio.service import RPCError

    schedule = Schedule(
        action=ScheduleActionStartWorkflow(RetentionSweepWorkflow.run, id=WORKFLOW_ID, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RETENTION_SWEEP_EVERY)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        return False
    except RPCError as exc:
        log.warning("could not create the retention sweep's schedule %r: %s", SCHEDULE_ID, exc.message)
        return False
    log.info("created the retention sweep's schedule %r (every %s)", SCHEDULE_ID, RETENTION_SWEEP_EVERY)
    return True


async def _connect_with_retry(settings: Settings, runtime: Runtime | None = None) -> Client:
    from disputeflow.temporal import connect

    delay = 0.5
    while True:
        try:
            return await connect(settings, runtime=runtime)
        except Exception as exc:  # noqa: BLE001 - the server may still be starting
            log.warning("Temporal at %s not reachable yet (%s); retrying", settings.effective_temporal_address, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


async def main() -> None:
    from disputeflow.db.engine import engine_for
    from disputeflow.db.engine import write_session
    from disputeflow.db.reference import seed_reference

    from disputeflow import logs, tracing

    settings = get_settings()
    logs.setup(settings.log_format, settings.log_level)
    tracing.configure(settings.otlp_endpoint, "disputeflow-worker")
    engine = engine_for(settings.effective_database_url)
    with write_session(engine) as session:
        mediators, lawyers = seed_reference(session, settings.reference_file)
    log.info("reference data: %d mediators, %d lawyers", mediators, lawyers)
    from disputeflow.temporal import data_converter

    data_converter(settings)  # unusable payload keys stop the worker here, not in a retry loop
    from disputeflow.temporal import metrics_runtime

    try:
        runtime = metrics_runtime(settings)
    except Exception as exc:  # noqa: BLE001 - e.g. the port is taken: run the cases without the metrics
        log.error("worker metrics unavailable on %s:%d: %s", settings.metrics_host, settings.worker_metrics_port, exc)
        runtime = None
    else:
        if runtime is not None:
            log.info("worker metrics on http://%s:%d/metrics", settings.metrics_host, settings.worker_metrics_port)
    client = await _connect_with_retry(settings, runtime)
    worker = build_worker(client, settings, engine)
    await ensure_retention_schedule(client, settings.temporal_task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r on %s", settings.temporal_task_queue, settings.effective_temporal_address)
    async with worker, notification_sender(settings, engine, stop):
        await stop.wait()
    log.info("worker stopped")
    tracing.shutdown()


@asynccontextmanager
async def notification_sender(settings: Settings, engine: Engine, stop: asyncio.Event) -> AsyncIterator[None]:
    """Deliver the outbox to the configured webhook alongside the worker; nothing when none is set."""
    from disputeflow.notify import WebhookSender, run_sender

    if settings.notify_webhook_url is None:
        log.info("no DISPUTEFLOW_NOTIFY_WEBHOOK_URL: notifications are kept for GET /me/notifications only")
        yield
        return
    secret = settings.notify_webhook_secret
    sender = WebhookSender(engine, str(settings.notify_webhook_url),
                           secret=secret.get_secret_value() if secret else None, api_url=settings.effective_public_url)
    task = asyncio.create_task(run_sender(sender, stop))
    log.info("delivering notifications to %s", sender.url)
    try:
        yield
    finally:
        stop.set()
        await task
        sender.close()


def run() -> None:
    """`python worker.py`: run until SIGINT/SIGTERM, then exit 0."""
    asyncio.run(main())
    # Everything has stopped. The SDK's Rust threads can outlive the event loop and abort the
    # interpreter's teardown ("Fatal Python error: PyGILState_Release", SIGABRT; temporalio
    # sdk-python issue 300): a clean stop would exit -6. Flush the logs and leave without it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
