"""Fixtures for driving case workflows on Temporal's time-skipping test server."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from disputeflow.contracts import workflow_id_for
from disputeflow.db.engine import write_session
from disputeflow.db.models import CaseEventRecord, CaseRecord, OutboxMessage
from disputeflow.db.reference import seed_reference
from disputeflow.domain.actions import ActionRequest, Actor
from disputeflow.domain.case import CaseView
from disputeflow.domain.enums import Role
from disputeflow.domain.intake import Intake
from disputeflow.settings import DEFAULT_POLICY_FILE, DEFAULT_REFERENCE_FILE, Settings
from disputeflow.temporal import register_search_attributes
from tests.conftest import RECORDING_DIR, installed_binary
from tests.samples import WAGE_ARREARS_CALL
from worker import build_worker
from disputeflow.pinning import PolicyPins
from workflows.case import CaseWorkflowV2

RECORD = os.environ.get("DISPUTEFLOW_RECORD_HISTORIES") == "1"


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        await register_search_attributes(env.client, "default")
        yield env
    finally:
        await env.shutdown()


def read_model_down(engine: Engine) -> None:
    """A real outage of the read model: every projection fails until `read_model_back`."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE outbox"))


def read_model_back(engine: Engine) -> None:
    OutboxMessage.__table__.create(engine)


SLEEP_ATTEMPTS = 3


async def advance(env: WorkflowEnvironment, delta: timedelta) -> None:
    """Skip `delta` of the test server's time. Its sleep call waits, in real time, for the work the
    skipped time sets off (with the cache off every workflow task replays the whole case); on a
    loaded machine that call has failed with "Timeout expired" or a broken HTTP/2 stream while the
    server went on. Then the rest is skipped again, up to the same instant: at most three calls."""
    target = await env.get_current_time() + delta
    for attempt in range(1, SLEEP_ATTEMPTS + 1):
        try:
            await env.sleep(delta)
            return
        except RPCError:
            if attempt == SLEEP_ATTEMPTS:
                raise
        delta = target - await env.get_current_time()
        if delta <= timedelta(0):
            return


def make_intake(**overrides) -> Intake:
    return Intake.model_validate(WAGE_ARREARS_CALL | overrides)


OPERATOR = Actor(user_id="op-1", role=Role.operator, region_code="370102")
SUPERVISOR = Actor(user_id="sup-1", role=Role.supervisor, region_code="3701")
OFFICER = Actor(user_id="la-1", role=Role.legal_aid_officer, region_code="370102")


def mediator(user_id: str) -> Actor:
    return Actor(user_id=user_id, role=Role.mediator, region_code="370102")


class CaseDriver:
    """Starts cases and acts on them the way the API does, on one task queue."""

    def __init__(self, env: WorkflowEnvironment, engine: Engine, task_queue: str, pins: PolicyPins) -> None:
        self.env, self.engine, self.task_queue, self.pins = env, engine, task_queue, pins
        self.opened: list[WorkflowHandle] = []

    async def open(self, intake: Intake | None = None, **overrides) -> WorkflowHandle:
        """Start a case as intake does; the handle follows the case across continue-as-new, as the API's does."""
        case_id = f"T{uuid.uuid4().hex[:10]}"
        intake = intake or make_intake(**overrides)
        start = self.pins.start(case_id, intake, registered_at=await self.env.get_current_time(),
                                registered_by=OPERATOR)
        await self.env.client.start_workflow(
            CaseWorkflowV2.run, start, id=workflow_id_for(case_id),
            task_queue=self.task_queue,
        )
        handle = self.env.client.get_workflow_handle_for(CaseWorkflowV2.run, workflow_id_for(case_id))
        self.opened.append(handle)
        return handle

    async def act(self, handle: WorkflowHandle, actor: Actor, command: dict, request_id: str | None = None) -> CaseView:
        request = ActionRequest.model_validate(
            {"request_id": request_id or uuid.uuid4().hex, "actor": actor.model_dump(), "command": command}
        )
        return await handle.execute_update(CaseWorkflowV2.act, request, id=request.request_id)

    async def view(self, handle: WorkflowHandle) -> CaseView:
        return await handle.query(CaseWorkflowV2.view)

    async def advance(self, delta: timedelta) -> None:
        await advance(self.env, delta)

    def record(self, case_id: str) -> CaseRecord | None:
        with Session(self.engine) as session:
            return session.get(CaseRecord, case_id)

    def event_types(self, case_id: str) -> list[str]:
        with Session(self.engine) as session:
            rows = session.exec(select(CaseEventRecord).where(CaseEventRecord.case_id == case_id).order_by(CaseEventRecord.seq))
            return [r.type for r in rows]

    async def save_history(self, handle: WorkflowHandle, name: str, *, run_id: str | None = None) -> None:
        """With DISPUTEFLOW_RECORD_HISTORIES=1, keep this path's history for the replay tests.

        An existing file is never overwritten: old histories stay, so cases recorded under older
        code keep proving that today's code still replays them.
        """
        path = RECORDING_DIR / f"{name}.json"
        if not RECORD or path.exists():
            return
        if run_id is not None:
            handle = self.env.client.get_workflow_handle(handle.id, run_id=run_id)
        history = await handle.fetch_history()
        RECORDING_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1, ensure_ascii=False))

    async def close_open_cases(self) -> None:
        """Terminate what a test left running: an open case's timers would hold up time skipping."""
        for handle in self.opened:
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test finished")


@asynccontextmanager
async def running_driver(env: WorkflowEnvironment, engine: Engine, settings: Settings) -> AsyncIterator[CaseDriver]:
    """A worker on its own task queue, with the reference data seeded."""
    with write_session(engine) as session:
        seed_reference(session, DEFAULT_REFERENCE_FILE)
    task_queue = f"cases-{uuid.uuid4().hex[:8]}"
    async with build_worker(env.client, settings, engine, task_queue=task_queue):
        case_driver = CaseDriver(env, engine, task_queue, PolicyPins(settings.policy_file))
        try:
            yield case_driver
        finally:
            await case_driver.close_open_cases()


@pytest.fixture
def early_continue_as_new_policy(tmp_path: Path) -> Path:
    """The shipped policy with the smallest continue-as-new threshold it allows (100 events)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(re.sub(r"(?m)^max_history_events = \d+", "max_history_events = 100",
                             DEFAULT_POLICY_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    return policy


@pytest.fixture
async def driver(time_env: WorkflowEnvironment, sqlite_engine: Engine) -> AsyncIterator[CaseDriver]:
    async with running_driver(time_env, sqlite_engine, Settings()) as case_driver:
        yield case_driver
