"""POST /cases: case numbers, Idempotency-Key, readable 422s, 413, and a crash between key and start."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest
from sqlmodel import Session, select

from api import cases as case_service
from api.app import create_app
from disputeflow.contracts import workflow_id_for
from disputeflow.db.engine import write_session
from disputeflow.db.intake import claim_intake_key, intake_fingerprint
from disputeflow.db.models import CaseNumberCounter, CaseRecord, IntakeRequest
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.intake import Intake
from tests.api.conftest import MEDIATOR_1, OPERATOR, SUPERVISOR, Stack, intake_body
from worker import build_worker

CASE_NUMBER = re.compile(r"^(\d{6})-(\d{8})-(\d{4})$")


def _counter(stack: Stack, region: str) -> int:
    day = datetime.now(SHANGHAI).strftime("%Y%m%d")
    with Session(stack.engine) as session:
        row = session.get(CaseNumberCounter, (region, day))
        return row.last if row else 0


async def test_registers_a_case_and_answers_when_it_has_opened(stack: Stack) -> None:
    body = intake_body(region_code="370103")
    response = await stack.http.post("/cases", json=body, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 201, response.text
    case = response.json()
    region, day, number = CASE_NUMBER.match(case["case_id"]).groups()
    assert region == "370103" and day == datetime.now(SHANGHAI).strftime("%Y%m%d") and int(number) >= 1
    assert response.headers["Location"] == f"/cases/{case['case_id']}"
    assert case["source"] == "workflow" and case["stage"] == "triage"
    assert case["description"] == body["description"] and case["caller"] == {"name": "张三", "phone": "+8613800138000"}
    assert [t["kind"] for t in case["tasks"]] == ["triage"] and case["tasks"][0]["due_at"]
    assert case["timeline"][0]["type"] == "case_registered"
    assert case["timeline"][0]["actor_id"] == SUPERVISOR[0]  # who took the call
    description = await stack.env.client.get_workflow_handle(workflow_id_for(case["case_id"])).describe()
    assert description.task_queue == stack.settings.temporal_task_queue
    # numbers count up per region and day
    second = await stack.open_case(SUPERVISOR, region_code="370103")
    assert int(second["case_id"][-4:]) == int(number) + 1


async def test_same_key_same_body_is_the_same_case(stack: Stack) -> None:
    key, body = f"intake-{uuid.uuid4()}", intake_body()
    first = await stack.http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert first.status_code == 201
    numbers_used = _counter(stack, "370102")
    # the same request again, with the body's keys in another order and other spacing
    raw = json.dumps(dict(reversed(list(body.items()))), ensure_ascii=False, indent=2)
    again = await stack.http.post("/cases", content=raw.encode(), headers=stack.auth(OPERATOR) | {
        "Idempotency-Key": key, "Content-Type": "application/json"})
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    case_id = first.json()["case_id"]
    assert again.json()["case_id"] == case_id
    assert stack.count(IntakeRequest, IntakeRequest.idempotency_key == key) == 1
    assert _counter(stack, "370102") == numbers_used  # no second number: no second workflow
    await stack.projected(case_id)
    assert stack.count(CaseRecord, CaseRecord.description == body["description"]) == 1


async def test_same_key_different_body_is_refused(stack: Stack) -> None:
    key = f"intake-{uuid.uuid4()}"
    headers = stack.auth(OPERATOR) | {"Idempotency-Key": key}
    first = await stack.http.post("/cases", json=intake_body(), headers=headers)
    response = await stack.http.post("/cases", json=intake_body(), headers=headers)
    assert response.status_code == 409  # a well-formed request that runs into the key's earlier use
    assert "already used with a different body" in response.json()["detail"]
    assert first.json()["case_id"] not in response.text  # no case is named
    assert stack.count(IntakeRequest, IntakeRequest.idempotency_key == key) == 1


async def test_a_retry_after_a_crash_between_key_and_start_opens_the_recorded_case(stack: Stack) -> None:
    """The key was recorded, then the process died before starting the workflow."""
    key, body = f"intake-{uuid.uuid4()}", intake_body()
    with write_session(stack.engine) as session:
        claim = claim_intake_key(session, key=key, fingerprint=intake_fingerprint(Intake.model_validate(body)),
                                 region_code="370102", now=datetime.now(timezone.utc), owner=OPERATOR[0])
    response = await stack.http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert response.status_code == 200, response.text  # the case the key stands for, not a new one
    assert response.json()["case_id"] == claim.case_id and response.json()["stage"] == "triage"
    # and once more: the workflow already runs, starting it again is a no-op
    again = await stack.http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["timeline"] == response.json()["timeline"]


async def test_a_retry_after_the_case_closed_finds_it(stack: Stack) -> None:
    key, body = f"intake-{uuid.uuid4()}", intake_body(category="consultation")
    headers = stack.auth(OPERATOR) | {"Idempotency-Key": key}
    case_id = (await stack.http.post("/cases", json=body, headers=headers)).json()["case_id"]
    await stack.act(case_id, "answer_consultation", {"answer": "可申请劳动仲裁"})
    assert (await stack.act(case_id, "record_return_visit", {"satisfaction": 5})).json()["stage"] == "closed"
    again = await stack.http.post("/cases", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["case_id"] == case_id and again.json()["stage"] == "closed"


async def test_201_with_the_case_as_it_opens_even_before_a_worker_picks_it_up(stack: Stack) -> None:
    """One round trip: the answer is the case as its workflow opens it (the same rule on the same
    input), so no worker needs to have run yet; the workflow then holds exactly that case."""
    settings = stack.settings.model_copy(update={"temporal_task_queue": f"idle-{uuid.uuid4().hex[:8]}"})
    app = create_app(settings, clock=stack.env.get_current_time)
    key, body = f"intake-{uuid.uuid4()}", intake_body(urgency="emergency")
    headers = stack.auth(OPERATOR) | {"Idempotency-Key": key}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.post("/cases", json=body, headers=headers)
            assert response.status_code == 201, response.text
            opened = response.json()
            assert opened["stage"] == "triage" and response.headers["Location"] == f"/cases/{opened['case_id']}"
            (emergency,) = [c for c in opened["clocks"] if c["name"] == "emergency_response"]
            assert emergency["started_at"] == opened["opened_at"]
            async with build_worker(stack.env.client, settings, stack.engine, task_queue=settings.temporal_task_queue):
                live = (await http.get(f"/cases/{opened['case_id']}", headers=headers)).json()
                assert live["source"] == "workflow"
                assert {k: live[k] for k in ("opened_at", "clocks", "tasks", "timeline")} == {
                    k: opened[k] for k in ("opened_at", "clocks", "tasks", "timeline")}
                again = await http.post("/cases", json=body, headers=headers)
                assert again.status_code == 200, again.text
                assert again.json()["case_id"] == opened["case_id"] and again.json()["opened_at"] == opened["opened_at"]
                await stack.projected(opened["case_id"])
                await http.post(f"/cases/{opened['case_id']}/actions/withdraw", json={"reason": "测试结束"},
                                headers=stack.auth(OPERATOR))


async def test_only_in_your_region(stack: Stack) -> None:
    response = await stack.http.post("/cases", json=intake_body(region_code="110105"), headers=stack.auth(OPERATOR))
    assert response.status_code == 403
    assert response.json()["detail"].startswith("region 110105 is outside your region 370102")
    assert (await stack.http.post("/cases", json=intake_body(), headers=stack.auth(MEDIATOR_1))).status_code == 403


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"caller": {"name": "张三", "phone": "12345"}}, ["body", "caller", "phone"], "phone number"),
        ({"caller": {"name": "张三", "phone": "13800138000", "id_number": "1101011990030712"}},
         ["body", "caller", "id_number"], "pattern"),
        ({"category": "gossip"}, ["body", "category"], "consultation"),
        ({"region_code": "990102"}, ["body", "region_code"], "province-level prefix"),
        ({"region_code": 370102}, ["body", "region_code"], "string"),
        ({"description": "   "}, ["body", "description"], "at least 1 character"),
        ({"description": "长" * 2001}, ["body", "description"], "at most 2000"),
        ({"special_groups": ["vip"]}, ["body", "special_groups", 0], "low_income"),
        ({"urgency": None}, ["body", "urgency"], "normal"),
        ({"actor": {"user_id": "boss"}}, ["body", "actor"], "not permitted"),
    ],
    ids=["phone", "id-number-shape", "category", "region", "region-type", "blank", "too-long", "group", "null", "extra"],
)
async def test_invalid_fields_are_named(stack: Stack, change: dict, loc: list, words: str) -> None:
    response = await stack.http.post("/cases", json=intake_body(**change), headers=stack.auth(OPERATOR))
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [e["loc"] for e in errors] == [loc]
    assert words in errors[0]["msg"]
    assert set(errors[0]) == {"loc", "msg", "type"}  # the input is not echoed back


async def test_missing_fields_are_named(stack: Stack) -> None:
    response = await stack.http.post("/cases", json={"channel": "hotline"}, headers=stack.auth(OPERATOR))
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
        ("body", "caller"), ("body", "region_code"), ("body", "category"), ("body", "description")}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null", b'"text"', b"{\"channel\": NaN}",
                                 b"{\"caller\": 1e999}", b"{\"caller\": " + b"9" * 5000 + b"}", b"\xff\xfe"])
async def test_malformed_bodies_are_client_errors(stack: Stack, raw: bytes) -> None:
    response = await stack.http.post("/cases", content=raw, headers=stack.auth(OPERATOR) | {
        "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and response.status_code != 413, response.text


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "non-ascii-键"])
async def test_a_malformed_idempotency_key_is_named(stack: Stack, key: str) -> None:
    response = await stack.http.post("/cases", json=intake_body(), headers=stack.auth(OPERATOR) | {
        "Idempotency-Key": key.encode()})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_413_for_a_body_over_the_limit(stack: Stack) -> None:
    limit = stack.settings.max_body_bytes
    key = f"intake-{uuid.uuid4()}"
    headers = stack.auth(OPERATOR) | {"Idempotency-Key": key, "Content-Type": "application/json"}
    body = json.dumps(intake_body(counterparty="x" * limit)).encode()
    response = await stack.http.post("/cases", content=body, headers=headers)  # declared Content-Length
    assert response.status_code == 413 and str(limit) in response.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: a chunked upload
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    response = await stack.http.post("/cases", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert stack.count(IntakeRequest, IntakeRequest.idempotency_key == key) == 0
    # an action's body too
    response = await stack.act("370102-20000101-0001", "withdraw", {"reason": "长" * limit}, OPERATOR)
    assert response.status_code == 413


async def test_a_body_just_under_the_limit_is_read(stack: Stack) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps(intake_body())[:-1].encode()
        yield b"}"

    response = await stack.http.post("/cases", content=chunks(), headers=stack.auth(OPERATOR) | {
        "Content-Type": "application/json"})
    assert response.status_code == 201, response.text


def test_counter_rows_are_per_region_and_day(stack: Stack) -> None:
    with Session(stack.engine) as session:
        rows = session.exec(select(CaseNumberCounter)).all()
    assert rows and all(len(r.region_code) == 6 and len(r.day) == 8 for r in rows)


async def test_the_operator_sees_open_cases_from_the_same_caller(stack: Stack) -> None:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    first = await stack.open_case(caller={"name": "王五", "phone": phone})
    assert first["possible_duplicates"] == []
    await stack.projected(first["case_id"])  # hints come from the read model, which a new case reaches in a moment
    second = await stack.open_case(caller={"name": "王五", "phone": f"+86 {phone}"})
    assert second["possible_duplicates"] == [first["case_id"]]
    # the search (number in the body) finds them by any usual spelling of the number, and refuses a non-number
    listing = await stack.http.post("/cases/search", json={"phone": f"{phone[:3]} {phone[3:7]} {phone[7:]}"},
                                    headers=stack.auth(OPERATOR))
    assert {c["case_id"] for c in listing.json()["items"]} == {first["case_id"], second["case_id"]}
    bad = await stack.http.post("/cases/search", json={"phone": "12345"}, headers=stack.auth(OPERATOR))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "phone"]
    assert "12345" not in bad.text
    # a number in the query string is refused, pointing at the search, and searches nothing
    old = await stack.http.get("/cases", params={"phone": phone}, headers=stack.auth(OPERATOR))
    assert old.status_code == 422 and "POST /cases/search" in old.text and phone not in old.text
    # a closed case is no longer a duplicate
    await stack.act(first["case_id"], "withdraw", {"reason": "重复来电"})
    third = await stack.open_case(caller={"name": "王五", "phone": phone})
    assert third["possible_duplicates"] == [second["case_id"]]


async def test_an_identity_number_with_a_wrong_check_digit_is_a_409_with_its_reason(stack: Stack) -> None:
    """The shape is the schema's (422 when wrong); the check digit is a fact about the number that only
    code can compute: well-formed, refused by a rule, so 409 naming the rule (never the number)."""
    number = "110101199003071234"
    response = await stack.http.post("/cases", headers=stack.auth(OPERATOR), json=intake_body(
        caller={"name": "张三", "phone": "13800138000", "id_number": number}))
    assert response.status_code == 409, response.text
    assert "check digit" in response.json()["detail"] and number not in response.text
