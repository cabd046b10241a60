"""503 + Retry-After when Temporal is unreachable, and nothing half-created left behind.

Runs a real dev server (not the time-skipping one), opens a case, stops the server, then registers
another: the answer is 503, and neither an IntakeRequest nor a CaseRecord row appears.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.models import CaseNumberCounter, CaseRecord, IntakeRequest
from disputeflow.db.reference import seed_reference
from disputeflow.settings import DEFAULT_REFERENCE_FILE
from disputeflow.temporal import SEARCH_ATTRIBUTES, data_converter
from tests.api.conftest import OPERATOR, SUPERVISOR, Stack, intake_body, settings_for
from tests.conftest import free_port, installed_binary
from worker import build_worker


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "unavailable" in response.json()["detail"]


async def test_503_and_nothing_half_created_when_temporal_stops(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "set-below", f"down-{uuid.uuid4().hex[:6]}")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(settings), dev_server_extra_args=["--headless"])
    settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
    engine = engine_for(settings.effective_database_url)
    with write_session(engine) as session:
        seed_reference(session, DEFAULT_REFERENCE_FILE)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            stack = Stack(env, settings, engine, http)
            try:
                async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
                    case = await stack.open_case()
                    await stack.projected(case["case_id"])
            finally:
                await env.shutdown()

            intakes, cases = stack.count(IntakeRequest), stack.count(CaseRecord)
            key = f"intake-{uuid.uuid4()}"
            started = time.monotonic()
            response = await http.post("/cases", json=intake_body(), headers=stack.auth(OPERATOR) | {
                "Idempotency-Key": key})
            _assert_unavailable(response)
            assert time.monotonic() - started < 5
            assert stack.count(IntakeRequest) == intakes and stack.count(CaseRecord) == cases
            assert stack.count(IntakeRequest, IntakeRequest.idempotency_key == key) == 0

            # an open case is read from the read model when its workflow cannot answer, with its age
            read = await http.get(f"/cases/{case['case_id']}", headers=stack.auth(OPERATOR))
            assert read.status_code == 200 and read.json()["source"] == "read_model" and read.json()["as_of"]
            assert read.json()["stage"] == "triage" and read.json()["tasks"]
            _assert_unavailable(await stack.act(case["case_id"], "send_to_mediation"))
            _assert_unavailable(await http.get(f"/cases/{case['case_id']}/timeline", headers=stack.auth(SUPERVISOR)))
            # the read model still answers what it can
            listed = await http.get("/cases", headers=stack.auth(OPERATOR))
            assert listed.status_code == 200 and [c["case_id"] for c in listed.json()["items"]] == [case["case_id"]]


async def test_503_before_anything_is_written_when_temporal_was_never_reached(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"127.0.0.1:{free_port()}", "nowhere")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            stack = Stack(None, settings, engine_for(settings.effective_database_url), http)  # type: ignore[arg-type]
            response = await http.post("/cases", json=intake_body(), headers=stack.auth(OPERATOR) | {
                "Idempotency-Key": "k-1"})
            _assert_unavailable(response)
            assert stack.count(IntakeRequest) == 0 and stack.count(CaseNumberCounter) == 0
