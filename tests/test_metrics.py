"""On the real stack (`python -m disputeflow.stack`): the API's and the worker's Prometheus endpoints
answer, carry the documented metrics after a case is registered and acted on, and every metric the
Grafana dashboard queries is in a scrape; the stack's logs are JSON lines with the request's ids
and none of the caller's data."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.auth import issue_token
from disputeflow.settings import Settings
from tests.samples import WAGE_ARREARS_CALL
from tests.test_stack import RunningStack, stack_settings, healthy_stack

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "disputeflow.json"
START_TIMEOUT_SECONDS = 60
# Worker metrics the SDK exports once a workflow task and an activity have run (counters end in
# `_total`, `counters_total_suffix`; latencies are in seconds, `durations_as_seconds`).
WORKER_METRICS = ("temporal_workflow_task_execution_latency_bucket", "temporal_activity_execution_latency_bucket",
                  "temporal_activity_task_received_total", "temporal_worker_task_slots_available")


def scrape(url: str) -> set[str]:
    """The metric names of a scrape: each sample's name, and each family's."""
    text = httpx.get(url, timeout=5).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_metrics() -> set[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    assert exprs, "the dashboard queries nothing"
    found = set()
    for expr in exprs:
        found.update(n for n in re.findall(r"\b((?:disputeflow|temporal)_[a-z0-9_]+)\b", expr))
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, RunningStack]]:
    folder = tmp_path_factory.mktemp("metrics-stack")
    settings = stack_settings(folder / "data")
    with healthy_stack(settings, folder / "stack.log", START_TIMEOUT_SECONDS) as running:
        api = f"http://127.0.0.1:{settings.api_port}"
        op = {"Authorization": f"Bearer {issue_token(settings, user_id='op-m1', role='operator', region='370102')}"}
        created = httpx.post(f"{api}/cases", json=WAGE_ARREARS_CALL, timeout=30,
                             headers={**op, "Idempotency-Key": "metrics-1", "X-Request-ID": "metrics-intake-1"})
        assert created.status_code == 201, created.text
        case_id = created.json()["case_id"]
        acted = httpx.post(f"{api}/cases/{case_id}/actions/send_to_mediation", json={}, headers=op, timeout=30)
        assert acted.status_code == 200, acted.text
        yield settings, running


def test_the_api_exports_its_documented_metrics(stack: tuple[Settings, RunningStack]) -> None:
    settings, _ = stack
    names = scrape(f"http://127.0.0.1:{settings.api_metrics_port}/metrics")
    for name in ("disputeflow_http_requests_total", "disputeflow_http_request_duration_seconds_bucket",
                 "disputeflow_intake_requests_total", "disputeflow_intake_duration_seconds_count",
                 "disputeflow_actions_total", "disputeflow_action_duration_seconds_count",
                 "disputeflow_open_cases", "disputeflow_clocks_at_risk", "disputeflow_notifications_undelivered",
                 "disputeflow_projection_lag_seconds", "disputeflow_read_model_up"):
        assert name in names, f"{name} missing from the API's scrape: {sorted(names)}"
    text = httpx.get(f"http://127.0.0.1:{settings.api_metrics_port}/metrics", timeout=5).text
    assert "13800138000" not in text and "张三" not in text
    assert not re.search(r"\d{6}-\d{8}-\d{4}", text), "a case id is a label"


def test_the_worker_exports_the_sdk_metrics(stack: tuple[Settings, RunningStack]) -> None:
    settings, _ = stack
    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    deadline = time.monotonic() + 20  # the SDK exports a metric once it has a value
    while (missing := [n for n in WORKER_METRICS if n not in scrape(url)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing, f"missing from the worker's scrape: {missing}; it has {sorted(scrape(url))}"


def test_every_metric_the_dashboard_queries_is_exported(stack: tuple[Settings, RunningStack]) -> None:
    settings, _ = stack
    exported = (scrape(f"http://127.0.0.1:{settings.api_metrics_port}/metrics")
                | scrape(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"))
    queried = dashboard_metrics()
    # A family without samples (no breach yet) is still in a scrape, by its HELP and TYPE lines.
    missing = sorted(m for m in queried if m not in exported)
    assert not missing, f"the dashboard queries metrics missing from a scrape: {missing}"
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`", (ROOT / "docs" / "operations.md").read_text(), flags=re.M))
    undocumented = sorted(m for m in queried if m.startswith("disputeflow_")
                          and re.sub(r"_(bucket|count|sum)$", "", m) not in documented)
    assert not undocumented, f"docs/operations.md does not document: {undocumented}"


def test_the_stack_logs_json_lines_with_request_and_user_ids(stack: tuple[Settings, RunningStack]) -> None:
    _, running = stack
    output = running.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    intake = [line for line in lines if line.get("request_id") == "metrics-intake-1"
              and line.get("logger") == "disputeflow.api.requests"]
    assert intake and intake[0]["user_id"] == "op-m1" and intake[0]["route"] == "/cases", lines[-20:]
    assert any(line.get("logger") == "disputeflow.worker" for line in lines)
    assert "13800138000" not in output and "张三" not in output
