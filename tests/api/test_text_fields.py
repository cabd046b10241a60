"""Free text at the API: NUL, control and bidi-override characters get a 422 naming the field and
not echoing the text, in the intake and in actions; clean text is stored NFC; and on PostgreSQL,
which refuses a NUL in a text column, no such character ever reaches the database."""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.models import CaseEventRecord, CaseRecord, IntakeRequest
from disputeflow.db.reference import seed_reference
from disputeflow.settings import DEFAULT_REFERENCE_FILE
from disputeflow.temporal import data_converter, register_search_attributes
from tests.api.conftest import OFFICER, OPERATOR, SUPERVISOR, Stack, intake_body, settings_for
from tests.conftest import installed_binary
from worker import build_worker

SECRET = "李四的秘密"  # what a caller said: never in an answer
BAD = {"NUL": "\x00", "BEL": "\x07", "ESC": "\x1b", "DEL": "\x7f", "CSI": "\x9b", "RLO": "\u202e", "LRI": "\u2066",
       "PDI": "\u2069"}


def _with(char: str) -> str:
    return f"{SECRET[:2]}{char}{SECRET[2:]}"


def _intake_with(path: tuple[str, ...], value: str) -> dict[str, Any]:
    body = intake_body()
    if path[0] == "caller":
        body["caller"] = {**body["caller"], path[1]: value}
    else:
        body[path[0]] = value
    return body


def _assert_named_not_echoed(response: httpx.Response, loc: list[str | int], char: str) -> None:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == "text_character_refused"
    field = next(part for part in reversed(loc) if isinstance(part, str))
    assert error["msg"].startswith(f"{field} contains ") and f"U+{ord(char):04X}" in error["msg"]
    assert "remove it" in error["msg"]
    answer = json.dumps(response.json(), ensure_ascii=False)
    assert SECRET[:2] not in answer and SECRET[2:] not in answer and char not in answer


INTAKE_FIELDS = [("caller", "name"), ("description",), ("counterparty",), ("transfer_order_id",)]


@pytest.mark.parametrize("char", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("path", INTAKE_FIELDS, ids=[".".join(p) for p in INTAKE_FIELDS])
async def test_intake_text_with_a_bad_character_is_a_422_naming_the_field(stack: Stack, path, char) -> None:
    before = stack.count(IntakeRequest)
    response = await stack.http.post("/cases", json=_intake_with(path, _with(char)), headers=stack.auth(OPERATOR))
    _assert_named_not_echoed(response, ["body", *path], char)
    assert stack.count(IntakeRequest) == before  # refused before anything was written


@pytest.mark.parametrize("char", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("field", ["phone", "id_number"])
async def test_the_caller_numbers_refuse_a_bad_character_by_their_pattern(stack: Stack, field: str, char: str) -> None:
    """Not free text: a phone number and an identity-card number have their own patterns
    (disputeflow.domain.patterns), which no control or bidi character matches. Still a 422 naming
    the field, and the value is not echoed."""
    value = f"1380{char}0138000" if field == "phone" else f"1101051949{char}1231002X"
    before = stack.count(IntakeRequest)
    response = await stack.http.post("/cases", json=_intake_with(("caller", field), value),
                                     headers=stack.auth(OPERATOR))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "caller", field]
    assert value not in json.dumps(response.json(), ensure_ascii=False) and char not in response.text
    assert stack.count(IntakeRequest) == before


@pytest.mark.parametrize(("path", "char"), [(("caller", "name"), "\n"), (("caller", "name"), "\t"),
                                            (("transfer_order_id",), "\n")], ids=["name-LF", "name-tab", "order-LF"])
async def test_single_line_fields_refuse_line_breaks_and_tabs(stack: Stack, path, char) -> None:
    response = await stack.http.post("/cases", json=_intake_with(path, _with(char)), headers=stack.auth(OPERATOR))
    _assert_named_not_echoed(response, ["body", *path], char)
    assert "single line" in response.json()["detail"][0]["msg"]


async def test_clean_text_is_stored_nfc_with_its_line_breaks(stack: Stack) -> None:
    decomposed = f"Jose\u0301 说：\r\n第二行\t{uuid.uuid4().hex[:8]}"
    case = await stack.open_case(caller={"name": "Zoe\u0308", "phone": "13800138000"}, description=decomposed)
    expected = unicodedata.normalize("NFC", decomposed.replace("\r\n", "\n"))
    assert case["description"] == expected and case["caller"]["name"] == "Zoë"
    record = await stack.projected(case["case_id"])
    assert record.description == expected


ACTIONS = [  # (action, who may take it, body with the bad text in place of "X", field)
    ("send_to_mediation", OPERATOR, {"note": "X"}, "note"),
    ("refer", OPERATOR, {"body": "labour_arbitration", "organisation": "X"}, "organisation"),
    ("escalate", SUPERVISOR, {"reason": "X"}, "reason"),
    ("withdraw", SUPERVISOR, {"reason": "X"}, "reason"),
    ("answer_consultation", OPERATOR, {"answer": "X"}, "answer"),
    ("request_materials", OFFICER, {"missing": ["身份证", "X"]}, ("missing", 1)),
    ("pause_clock", SUPERVISOR, {"clock_id": "X", "reason": "awaiting_party"}, "clock_id"),
]


async def test_action_text_with_a_bad_character_is_a_422_naming_the_field(stack: Stack) -> None:
    case = await stack.open_case()
    events = stack.count(CaseEventRecord, CaseEventRecord.case_id == case["case_id"])
    for action, who, template, field in ACTIONS:
        for char in BAD.values():
            body = {k: ([_with(char) if i == "X" else i for i in v] if isinstance(v, list) else
                        _with(char) if v == "X" else v) for k, v in template.items()}
            response = await stack.act(case["case_id"], action, body, who)
            loc = ["body", *field] if isinstance(field, tuple) else ["body", field]
            _assert_named_not_echoed(response, loc, char)
    assert stack.count(CaseEventRecord, CaseEventRecord.case_id == case["case_id"]) == events
    # a clean multi-line note with a tab goes through
    response = await stack.act(case["case_id"], "send_to_mediation", {"note": "双方同意\n\t下周调解"})
    assert response.status_code == 200, response.text


async def test_the_openapi_schema_shows_the_patterns(stack: Stack) -> None:
    schemas = (await stack.http.get("/openapi.json")).json()["components"]["schemas"]
    assert "pattern" in schemas["Caller"]["properties"]["name"]
    note = schemas["SendToMediationBody"]["properties"]["note"]
    assert "\\x00-\\x08" in note["pattern"] and note["maxLength"] == 2000


# -- PostgreSQL ---------------------------------------------------------------------------------


async def test_a_nul_never_reaches_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL refuses a NUL in a text column: the API must refuse it first, as a 422, and write
    nothing; the same request without it is registered and projected."""
    engine = engine_for(postgres_url)
    with Session(engine) as session, pytest.raises(DataError):  # the hazard: what a NUL would meet
        session.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})

    # The database first: the worker's data converter reads the cases' data keys from it, as the API's does.
    settings = settings_for(tmp_path, "set-below", f"nul-{uuid.uuid4().hex[:6]}").model_copy(
        update={"database_url": postgres_url})
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=installed_binary("temporal-test-server"), data_converter=data_converter(settings))
    try:
        await register_search_attributes(env.client, "default")
        settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        app = create_app(settings)
        async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                    stack = Stack(env, settings, engine, http)
                    body = intake_body(description=f"工资被拖欠\x00{SECRET}")
                    response = await http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {
                        "Idempotency-Key": f"nul-{uuid.uuid4()}"})
                    _assert_named_not_echoed(response, ["body", "description"], "\x00")
                    assert stack.count(IntakeRequest) == 0 and stack.count(CaseRecord) == 0

                    case = await stack.open_case(description=body["description"].replace("\x00", "\n"))
                    record = await stack.projected(case["case_id"])
                    assert "\n" in record.description
                    response = await stack.act(case["case_id"], "send_to_mediation", {"note": "\x00"})
                    _assert_named_not_echoed(response, ["body", "note"], "\x00")
                    for parameter in ("assignee", "clock"):  # was a 500: PostgreSQL refused the query
                        response = await http.get("/supervision/breaches", params={parameter: "med\x00"},
                                                  headers=stack.auth(SUPERVISOR))
                        assert response.status_code == 422, response.text
                        assert response.json()["detail"][0]["loc"] == ["query", parameter]
        with engine.connect() as conn:  # only the clean case is there
            assert conn.execute(text("SELECT count(*) FROM cases")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM intake_requests")).scalar_one() == 0
    finally:
        await env.shutdown()


@pytest.mark.parametrize("parameter", ["q", "phone", "assignee", "cursor"])
async def test_listing_parameters_refuse_control_characters_by_name(stack: Stack, parameter: str) -> None:
    response = await stack.http.get("/cases", params={parameter: "ab\x00cd"}, headers=stack.auth(OPERATOR))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", parameter]


async def test_a_bad_phone_search_does_not_echo_the_number(stack: Stack) -> None:
    response = await stack.http.get("/cases", params={"phone": "99912345"}, headers=stack.auth(OPERATOR))
    assert response.status_code == 422 and "99912345" not in response.text
