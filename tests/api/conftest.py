"""The API as it runs: the real app (lifespan entered) against Temporal's time-skipping test server,
a worker on its own task queue, and a SQLite read model. One stack for the whole API test session;
each test opens its own cases (unique text, unique Idempotency-Keys) and filters by them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import issue_token
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.models import CaseEventRecord, CaseRecord
from disputeflow.db.reference import seed_reference
from disputeflow.settings import DEFAULT_REFERENCE_FILE, Settings
from disputeflow.temporal import data_converter, register_search_attributes
from tests.conftest import installed_binary
from tests.samples import WAGE_ARREARS_CALL
from worker import build_worker

# A shared key the API does not accept (its tokens are EdDSA, the key generated in the data folder).
SIGNING_KEY = "api-tests-signing-key-not-secret-" + "0123456789abcdef" * 2

# Who calls: (user id, role, region).
OPERATOR = ("op-1", "operator", "370102")
OFFICER = ("la-1", "legal_aid_officer", "370102")
SUPERVISOR = ("sup-1", "supervisor", "3701")
AUDITOR = ("aud-1", "auditor", "37")
MEDIATOR_1 = ("med-370102-01", "mediator", "370102")
MEDIATOR_2 = ("med-370102-02", "mediator", "370102")
OTHER_SUPERVISOR = ("sup-bj", "supervisor", "1101")
OTHER_AUDITOR = ("aud-gd", "auditor", "44")
OTHER_OPERATOR = ("op-bj", "operator", "110105")
OTHER_OFFICER = ("la-bj", "legal_aid_officer", "110105")
ROLE_USERS = {"operator": OPERATOR, "mediator": MEDIATOR_1, "legal_aid_officer": OFFICER,
              "supervisor": SUPERVISOR, "auditor": AUDITOR}


def settings_for(tmp_path: Path, temporal_address: str, task_queue: str) -> Settings:
    return Settings(
        _env_file=None, temporal_address=temporal_address, temporal_namespace="default",
        temporal_task_queue=task_queue, data_dir=tmp_path,
        database_url=f"sqlite:///{(tmp_path / 'disputeflow.db').as_posix()}",
        # The tests call as a handful of users, far faster than people do; test_limits tightens them.
        rate_limit_per_minute=1_000_000, rate_limit_search_per_minute=1_000_000,
        rate_limit_expensive_per_minute=1_000_000,
    )


def intake_body(**overrides: Any) -> dict[str, Any]:
    """The sample call, its description made unique so that every body is a distinct request."""
    unique = {"description": f"{WAGE_ARREARS_CALL['description']}{uuid.uuid4().hex[:8]}"}
    return WAGE_ARREARS_CALL | unique | overrides


@dataclass
class Stack:
    env: WorkflowEnvironment
    settings: Settings
    engine: Engine
    http: httpx.AsyncClient
    app: Any = None  # the FastAPI app under test (its state: rate limiter, jobs)

    def auth(self, who: tuple[str, str, str], **claims: Any) -> dict[str, str]:
        user, role, region = who
        token = issue_token(self.settings, user_id=user, role=role, region=region, **claims)
        return {"Authorization": f"Bearer {token}"}

    async def open_case(self, who: tuple[str, str, str] = OPERATOR, **overrides: Any) -> dict[str, Any]:
        """Register a case and wait until listings, inboxes and reports have it (a moment later)."""
        response = await self.http.post("/cases", json=intake_body(**overrides), headers=self.auth(who))
        assert response.status_code == 201, response.text
        await self.projected(response.json()["case_id"])
        return response.json()

    async def act(self, case_id: str, action: str, body: dict[str, Any] | None = None,
                  who: tuple[str, str, str] = OPERATOR, key: str | None = None) -> httpx.Response:
        headers = self.auth(who) | ({"Idempotency-Key": key} if key else {})
        return await self.http.post(f"/cases/{case_id}/actions/{action}", json=body or {}, headers=headers)

    async def open_in_mediation(self) -> dict[str, Any]:
        case = await self.open_case()
        response = await self.act(case["case_id"], "send_to_mediation")
        assert response.status_code == 200, response.text
        case = response.json()
        assert case["mediator"] is not None
        return case

    def count(self, model: type, *where: Any) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(model).where(*where)).one()

    async def projected(self, case_id: str, until: Callable[[CaseRecord], bool] = lambda r: True) -> CaseRecord:
        """The case's read-model row once `until` holds (projection runs in an activity)."""
        for _ in range(100):
            with Session(self.engine) as session:
                record = session.get(CaseRecord, case_id)
            if record is not None and until(record):
                return record
            await asyncio.sleep(0.05)
        raise AssertionError(f"case {case_id} was not projected as expected")

    def events(self, case_id: str) -> list[str]:
        with Session(self.engine) as session:
            rows = session.exec(select(CaseEventRecord.type).where(CaseEventRecord.case_id == case_id)
                                .order_by(CaseEventRecord.seq))
            return list(rows)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = settings_for(tmp_path_factory.mktemp("api"), "set-below", f"api-{uuid.uuid4().hex[:8]}")
    # The worker runs on the environment's client: with the payload keys the API uses, as in production.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"), data_converter=data_converter(settings))
    try:
        await register_search_attributes(env.client, "default")
        settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        engine = engine_for(settings.effective_database_url)
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        app = create_app(settings, clock=env.get_current_time)
        async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                    yield Stack(env, settings, engine, http, app)
    finally:
        await env.shutdown()
