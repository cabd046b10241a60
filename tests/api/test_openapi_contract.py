"""The OpenAPI document says what each route answers: the errors FastAPI and Starlette produce
themselves come in the API's one error shape and with a declared status."""

from __future__ import annotations

import pytest

from api.app import create_app
from api.auth import api_routes
from tests.api.conftest import OPERATOR, SUPERVISOR, Stack

SPEC = create_app().openapi()
OPERATIONS = [(path, method, operation) for path, item in SPEC["paths"].items() for method, operation in item.items()]
ERROR_REF = "#/components/schemas/ErrorBody"


def _error_schema(operation: dict, status: str) -> str | None:
    return operation["responses"][status].get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_every_operation_declares_its_errors_with_the_one_error_model(path: str, method: str, operation: dict) -> None:
    declared = set(operation["responses"])
    if path != "/health":
        expected = {"401", "403", "422", "503"}
        if "{case_id}" in path or "{notification_id}" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected.add("413")
        if "/actions/" in path or (path, method) == ("/cases", "post"):
            expected.add("409")
        assert expected <= declared, f"{method.upper()} {path} does not declare {sorted(expected - declared)}"
    for status in declared - {"200", "201", "202"}:
        if path == "/health" and status == "503":
            continue  # degraded: the health document itself
        assert _error_schema(operation, status) == ERROR_REF, (method, path, status)
    if "503" in declared:
        assert "Retry-After" in operation["responses"]["503"].get("headers", {}), (method, path)


async def test_a_body_that_is_not_utf8_is_invalid_input_not_a_bare_400(stack: Stack) -> None:
    response = await stack.http.post("/cases", content=b'{"channel": "\xff\xfe"}',
                                     headers=stack.auth(OPERATOR) | {"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"detail": [{"loc": ["body"], "msg": "the body is not JSON encoded as UTF-8",
                                           "type": "json_invalid"}]}


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("OPTIONS", "/cases", "GET, POST"),  # two routers share the path: both methods are named
    ("DELETE", "/cases/370102-20261130-0001", "GET"),
    ("GET", "/cases/370102-20261130-0001/actions/withdraw", "POST"),
    ("PUT", "/me/notifications/1/acknowledge", "POST"),
])
async def test_405_names_every_method_of_the_path(stack: Stack, method: str, path: str, allowed: str) -> None:
    response = await stack.http.request(method, path, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json() == {"detail": "Method Not Allowed"}


def test_the_allow_header_of_every_path_is_its_documented_methods() -> None:
    from api.errors import allowed_methods

    app = create_app()
    documented: dict[str, set[str]] = {}
    for route in api_routes(app):
        documented.setdefault(route.path, set()).add(route.method)
    for path, methods in documented.items():
        concrete = path.replace("{case_id}", "370102-20261130-0001").replace("{notification_id}", "1")
        assert set(allowed_methods(app, concrete)) == methods, path
