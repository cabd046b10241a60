"""The OpenAPI document people read, and a sweep of hostile inputs that must never end in a 500."""

from __future__ import annotations

import re

import pytest

from api.app import create_app
from api.auth import api_routes
from disputeflow.domain.actions import COMMAND_TYPES
from tests.api.conftest import ROLE_USERS, Stack

SPEC = create_app().openapi()


def test_tags_summaries_and_one_schema_per_action() -> None:
    assert [t["name"] for t in SPEC["tags"]] == [
        "intake", "cases", "actions", "mediators", "notifications", "supervisors", "auditors", "health"]
    for kind, command in COMMAND_TYPES.items():
        operation = SPEC["paths"][f"/cases/{{case_id}}/actions/{kind}"]["post"]
        assert operation["operationId"] == f"act_{kind}" and operation["summary"]
        assert "actions" in operation["tags"]
        schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schema_ref.endswith(f"/{command.__name__}Body")
        body = SPEC["components"]["schemas"][f"{command.__name__}Body"]
        assert "type" not in body.get("properties", {}) and body["additionalProperties"] is False
        assert {"404", "409", "401", "403", "422", "503"} <= set(operation["responses"])
    for kind in ("reassign_mediator", "extend_clock"):
        assert "supervisors" in SPEC["paths"][f"/cases/{{case_id}}/actions/{kind}"]["post"]["tags"]
    assert "mediators" in SPEC["paths"]["/cases/{case_id}/actions/record_mediation_session"]["post"]["tags"]
    intake = SPEC["paths"]["/cases"]["post"]
    assert intake["tags"] == ["intake"]
    assert "工地拖欠" in str(intake["requestBody"]["content"]["application/json"]["examples"])
    assert SPEC["paths"]["/me/tasks"]["get"]["tags"] == ["mediators"]
    assert SPEC["paths"]["/me/notifications"]["get"]["tags"] == ["notifications"]
    assert SPEC["paths"]["/audit/verify"]["post"]["tags"] == ["auditors"]
    assert SPEC["paths"]["/supervision/breaches"]["get"]["tags"] == ["supervisors"]
    # never a table model
    assert not {"CaseRecord", "CaseTaskRecord", "ClockRecord", "AuditEntry", "IntakeRequest"} & set(
        SPEC["components"]["schemas"])


ROUTES = [(r.method, r.path, r.roles) for r in api_routes(create_app()) if r.roles]
ODD_IDS = ["..", "a" * 41, "-leading-dash", "案件", "x%00y", "370102-20261130-0001;DROP"]
ODD_QUERY = {
    "limit": "9" * 40, "offset": "-9" * 20, "cursor": "!!" * 50, "q": "%" * 101, "stage": "\u0000",
    "opened_from": "2026-99-99", "opened_to": "99999-01-01", "breached": "2", "region": "37%",
    "within_hours": "1e309", "start": "yesterday", "end": "0000-00-00", "period": "fortnight",
    "group_by": "4.5", "run": "0", "include_ended": "sometimes", "assignee": "x" * 65, "clock": "y" * 65,
    "urgency": "EMERGENCY", "category": ["dispute", "x"], "dispute_type": "", "phase": "closed ",
    "kind": "k" * 100, "case_id": "../../etc/passwd", "unacknowledged_only": "maybe",
}
ODD_NOTIFICATION_IDS = ["0", "-1", "9" * 30, "1e3", "abc", "%00"]
ODD_BODIES = [b"", b"{}", b"[]", b"{\"a\":", b"{\"reason\": {\"$gt\": 1}}", b"{\"satisfaction\": 1e400}",
              b"{\"monthly_income_per_capita\": NaN}",
              b"{\"missing\": " + b"[\"x\"," * 200 + b"\"x\"" + b"]" * 200 + b"}",  # deeply nested
              b"{\"limitation_deadline\": \"2026-02-30\"}", b"\"" + "长".encode() * 100 + b"\""]


@pytest.mark.parametrize(("method", "path", "roles"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_no_input_gives_a_500(stack: Stack, method: str, path: str, roles) -> None:
    headers = stack.auth(ROLE_USERS[sorted(r.value for r in roles)[0]])
    if "{case_id}" in path:
        urls = [path.replace("{case_id}", case_id) for case_id in ODD_IDS]
    elif "{notification_id}" in path:
        urls = [path.replace("{notification_id}", odd) for odd in ODD_NOTIFICATION_IDS]
    else:
        urls = [path]
    for url in urls:
        response = await stack.http.request(method, url, params=ODD_QUERY, headers=headers)
        assert response.status_code < 500, (url, response.text)
    if method == "POST":
        url = path.replace("{case_id}", "370102-20000101-0001").replace("{notification_id}", "1")
        for body in ODD_BODIES:
            response = await stack.http.post(url, content=body, headers=headers | {"Content-Type": "application/json"})
            assert response.status_code < 500, (url, body[:40], response.text)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_work_without_internet(stack: Stack, page: str) -> None:
    """The docs load every script and stylesheet from the API itself, never from a CDN."""
    response = await stack.http.get(page)
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        served = await stack.http.get(asset)
        assert served.status_code == 200 and len(served.content) > 0, asset
    assert "/openapi.json" in response.text
    # ...and the browser may not fetch anything from elsewhere (ReDoc's footer logo would).
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:"
    assert policy["connect-src"] == "'self'" and response.headers["referrer-policy"] == "no-referrer"
