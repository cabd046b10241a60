"""The codec endpoint the Temporal Web UI decrypts payloads through: auditors and supervisors only."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.routes.codec import BASE64_PATTERN, CodecPayload, CodecPayloads, _parse

from disputeflow.codec import ENCODING
from tests.api.conftest import AUDITOR, MEDIATOR_1, OFFICER, OPERATOR, SUPERVISOR, Stack

UI_ORIGIN = "http://127.0.0.1:8233"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAIN = {"payloads": [{"metadata": {"encoding": _b64(b"json/plain")}, "data": _b64('{"name":"张三"}'.encode())}]}


async def _encoded(stack: Stack) -> dict:
    response = await stack.http.post("/codec/encode", json=PLAIN, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_auditor_decodes_what_was_encoded(stack: Stack) -> None:
    encoded = await _encoded(stack)
    [payload] = encoded["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING
    assert "张三".encode() not in base64.b64decode(payload["data"])
    response = await stack.http.post("/codec/decode", json=encoded, headers=stack.auth(AUDITOR) | {
        "X-Namespace": "default"})
    assert response.status_code == 200, response.text
    assert response.json() == PLAIN
    # a payload without the marker (recorded before encryption) comes back as it is
    response = await stack.http.post("/codec/decode", json=PLAIN, headers=stack.auth(AUDITOR))
    assert response.json() == PLAIN


@pytest.mark.parametrize("who", [OPERATOR, MEDIATOR_1, OFFICER], ids=["operator", "mediator", "officer"])
async def test_other_roles_may_not_decode(stack: Stack, who: tuple[str, str, str]) -> None:
    encoded = await _encoded(stack)
    for route in ("/codec/decode", "/codec/encode"):
        response = await stack.http.post(route, json=encoded, headers=stack.auth(who))
        assert response.status_code == 403, response.text
        assert "张三" not in response.text
    assert (await stack.http.post("/codec/decode", json=encoded)).status_code == 401


async def test_an_undecryptable_payload_is_400_naming_the_key_only(stack: Stack) -> None:
    encoded = await _encoded(stack)
    encoded["payloads"][0]["metadata"]["encryption-key-id"] = _b64(b"k-retired")
    response = await stack.http.post("/codec/decode", json=encoded, headers=stack.auth(AUDITOR))
    assert response.status_code == 400 and "k-retired" in response.json()["detail"]
    bad = {"payloads": [{"metadata": {"encoding": ["json/plain"]}, "data": ""}]}
    assert (await stack.http.post("/codec/decode", json=bad, headers=stack.auth(AUDITOR))).status_code == 422


async def test_the_web_ui_origin_may_call_it_from_a_browser(stack: Stack) -> None:
    preflight = await stack.http.options("/codec/decode", headers={
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    answer = await stack.http.post("/codec/decode", json=PLAIN, headers=stack.auth(AUDITOR) | {"Origin": UI_ORIGIN})
    assert answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    # another origin is not admitted, and the rest of the API sends no CORS headers at all
    elsewhere = await stack.http.options("/codec/decode", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    cases = await stack.http.get("/cases", headers=stack.auth(AUDITOR) | {"Origin": UI_ORIGIN})
    assert "Access-Control-Allow-Origin" not in cases.headers


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(re.compile(BASE64_PATTERN, re.ASCII), fullmatch=True),
       st.from_regex(re.compile(BASE64_PATTERN, re.ASCII), fullmatch=True))
def test_every_base64_string_the_schema_allows_is_read(data: str, encoding: str) -> None:
    """The schema's pattern says exactly what the endpoint can read: no schema-valid body gets a 400."""
    body = CodecPayloads(payloads=[CodecPayload(data=data, metadata={"encoding": encoding})])
    assert len(_parse(body).payloads) == 1


async def test_what_is_not_base64_is_invalid_input(stack: Stack) -> None:
    response = await stack.http.post("/codec/decode", headers=stack.auth(AUDITOR),
                                     json={"payloads": [{"metadata": {"encoding": "A"}, "data": "not base64!"}]})
    assert response.status_code == 422
    assert sorted(e["loc"] for e in response.json()["detail"]) == [
        ["body", "payloads", 0, "data"], ["body", "payloads", 0, "metadata", "encoding"]]
