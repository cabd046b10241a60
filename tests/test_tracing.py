"""Tracing: one intake request is one trace, from the API's span through the Temporal client's call
to the workflow and its activities on the worker. Spans go to an in-memory exporter; with nothing
configured, no interceptor is installed at all."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from api.auth import issue_token
from disputeflow import tracing
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.reference import seed_reference
from disputeflow.settings import Settings
from disputeflow.temporal import connect
from tests.samples import WAGE_ARREARS_CALL
from tests.test_health import start_dev_server
from worker import build_worker


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)  # the other tests' clients and apps trace nothing
        provider.shutdown()


def test_nothing_is_traced_unless_configured() -> None:
    assert not tracing.enabled()
    assert tracing.temporal_interceptors() == []
    assert tracing.configure(None, "disputeflow-test") is False and not tracing.enabled()


async def test_one_request_is_one_trace_through_api_workflow_and_activities(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    async with await start_dev_server() as env:
        settings = Settings(_env_file=None, data_dir=tmp_path, api_metrics_port=0, worker_metrics_port=0,
                            temporal_address=env.client.service_client.config.target_host,
                            temporal_task_queue=f"tracing-{uuid.uuid4().hex[:8]}")
        engine = engine_for(settings.effective_database_url)
        with write_session(engine) as session:
            seed_reference(session, settings.reference_file)
        client = await connect(settings)  # tracing is on: the client, and the worker on it, carry the interceptor
        app = create_app(settings)
        token = issue_token(settings, user_id="op-t", role="operator", region="370102")
        async with build_worker(client, settings, engine), app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                response = await http.post("/cases", json=WAGE_ARREARS_CALL, timeout=30,
                                           headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "trace-1"})
                assert response.status_code == 201, response.text
                listing = await http.get("/cases", params={"q": "张三"},
                                         headers={"Authorization": f"Bearer {token}"})
                assert listing.status_code == 200, listing.text
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(s.name.startswith("RunActivity:")
                                                          for s in spans.get_finished_spans()):
                await asyncio.sleep(0.2)
        engine.dispose()
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    (api_span,) = [s for s in finished if s.name == "POST /cases"]
    trace_id = api_span.context.trace_id
    in_trace = {s.name for s in finished if s.context.trace_id == trace_id}
    assert "StartWorkflow:CaseWorkflowV2" in in_trace, names
    assert "RunWorkflow:CaseWorkflowV2" in in_trace, names
    assert any(name.startswith("RunActivity:") for name in in_trace), names
    # Ids and names only: nothing the caller said, not even from a listing's query string.
    assert any(s.name == "GET /cases" for s in finished), names
    for span in finished:
        text = repr(dict(span.attributes or {}))
        assert "13800138000" not in text and "张三" not in text and "%E5%BC%A0" not in text, text
