"""Metrics, structured logs and request ids, in process: the read-model figures against the rows they
count, a request's JSON log line (request id, user id, no caller data), `X-Request-ID`, and route
templates (never case ids) as metric labels. tests/test_metrics.py scrapes a whole stack."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine

from api.app import create_app
from api.auth import issue_token
from disputeflow import logs, metrics
from disputeflow.db.engine import create_schema, make_engine
from disputeflow.db.seed import seed
from disputeflow.settings import Settings
from tests.conftest import free_port

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def samples(registry_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(registry_text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'seeded.db'}")
    create_schema(engine)
    seed(engine, cases=400, now=NOW, days=60)
    yield engine
    engine.dispose()


def test_read_model_figures_are_the_rows_they_count(seeded: Engine) -> None:
    collector = metrics.ReadModelCollector(lambda: seeded, cache_seconds=0, now=lambda: NOW)
    registry = metrics.CollectorRegistry()
    registry.register(collector)
    found = samples(generate_latest(registry).decode())
    with seeded.connect() as conn:
        open_cases = conn.execute(text("SELECT count(*) FROM cases WHERE closed_at IS NULL")).scalar()
        breaches = conn.execute(text("SELECT count(*) FROM clocks WHERE status IN ('running', 'paused') "
                                     "AND breached = 1")).scalar()
        at_risk = conn.execute(text("SELECT due_at FROM clocks WHERE status IN ('running', 'paused') "
                                    "AND breached = 0")).scalars().all()
        triage_3701 = conn.execute(text("SELECT count(*) FROM cases WHERE closed_at IS NULL AND stage = 'triage' "
                                        "AND region_code LIKE '3701%'")).scalar()
        unsent = conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar()
    due_soon = sum(1 for due in at_risk if datetime.fromisoformat(str(due)).replace(tzinfo=UTC)
                   <= NOW + timedelta(hours=24))
    assert open_cases > 0 and breaches > 0 and due_soon > 0  # the seeded year has some of each
    assert found[("disputeflow_read_model_up", ())] == 1
    assert total(found, "disputeflow_open_cases") == open_cases
    assert total(found, "disputeflow_open_cases", region="3701", stage="triage") == triage_3701
    assert total(found, "disputeflow_open_breaches") == breaches
    assert total(found, "disputeflow_clocks_at_risk") == due_soon
    assert found[("disputeflow_notifications_undelivered", ())] == unsent
    assert found[("disputeflow_projection_lag_seconds", ())] >= 0
    # Labels: region codes and policy clock names, nothing else.
    for (name, labels), _ in found.items():
        for key, value in labels:
            if key == "region":
                assert value.isdigit() and len(value) in (4, 6), (name, value)


def test_read_model_figures_are_cached_and_survive_a_missing_database(seeded: Engine) -> None:
    calls = []

    def engine() -> Engine | None:
        calls.append(1)
        return seeded

    collector = metrics.ReadModelCollector(engine, cache_seconds=60)
    list(collector.collect())
    list(collector.collect())
    assert len(calls) == 1  # the second scrape is served from the cache
    down = metrics.ReadModelCollector(lambda: None, cache_seconds=0)
    assert [(m.name, m.samples[0].value) for m in down.collect()] == [("disputeflow_read_model_up", 0)]


@asynccontextmanager
async def served_app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(_env_file=None, data_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}",
                        api_metrics_port=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client, settings


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.setup("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_disputeflow", False)]:
            root.removeHandler(handler)


async def test_a_request_logs_one_json_line_with_its_ids_and_no_caller_data(tmp_path: Path,
                                                                           json_log: io.StringIO) -> None:
    async with served_app(tmp_path) as (http, settings):
        token = issue_token(settings, user_id="op-7", role="operator", region="370102")
        response = await http.get("/cases", params={"phone": "13800138000", "q": "张三"},
                                  headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-abc.1"})
        assert response.headers["X-Request-ID"] == "req-abc.1"
        bad = await http.get("/health", headers={"X-Request-ID": "has spaces; and <junk>"})
        assert bad.headers["X-Request-ID"] not in ("", "has spaces; and <junk>")
        assert len(bad.headers["X-Request-ID"]) == 32  # a fresh one
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "req-abc.1"]
    access = [line for line in mine if line["logger"] == "disputeflow.api.requests"]
    assert len(access) == 1, lines
    assert access[0]["user_id"] == "op-7"
    assert access[0]["route"] == "/cases" and access[0]["method"] == "GET"
    assert isinstance(access[0]["status"], int)
    text_logged = json_log.getvalue()
    assert "13800138000" not in text_logged and "张三" not in text_logged


async def test_metrics_label_routes_by_template_not_by_case_id(tmp_path: Path) -> None:
    async with served_app(tmp_path) as (http, settings):
        token = issue_token(settings, user_id="sup-1", role="supervisor", region="3701")
        await http.get("/cases/370102-20261202-0999", headers={"Authorization": f"Bearer {token}"})
        await http.post("/cases/370102-20261202-0999/actions/send_to_mediation", json={},
                        headers={"Authorization": f"Bearer {token}"})
        scraped = generate_latest(metrics.REGISTRY).decode()
    assert "370102-20261202-0999" not in scraped
    found = samples(scraped)
    assert total(found, "disputeflow_http_requests_total", route="/cases/{case_id}", method="GET") >= 1
    assert total(found, "disputeflow_actions_total", action="send_to_mediation") >= 1


def test_text_lines_on_a_terminal_json_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.wants_json("auto", io.StringIO())
    assert not logs.wants_json("auto", Terminal())
    assert not logs.wants_json("text", io.StringIO())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.temporal_activity = {"workflow_id": "case-370102-20261202-0001", "activity_type": "project"}
    with logs.bind(request_id="r1"):
        line = json.loads(logs.JsonFormatter().format(record))
    assert line["workflow_id"] == "case-370102-20261202-0001"
    assert line["case_id"] == "370102-20261202-0001" and line["request_id"] == "r1"
    assert "case_id=370102-20261202-0001" in logs.TextFormatter().format(record)
