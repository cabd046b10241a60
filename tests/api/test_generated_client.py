"""A client generated from the OpenAPI document, as an integrator would make one
(`openapi-python-client generate`), builds and drives a case from registration to closure."""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import sys
from collections.abc import AsyncIterator
import uuid
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from tests.api.conftest import OPERATOR, Stack

BIN = Path(sys.executable).parent
GENERATOR = shutil.which("openapi-python-client", path=str(BIN))
PACKAGE = "disputeflow_client"

pytestmark = pytest.mark.skipif(GENERATOR is None, reason="openapi-python-client is not installed")


@pytest.fixture(scope="module")
async def client_package(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    # Generated without blocking the event loop the API and its Temporal client share.
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_text(json.dumps(create_app().openapi()), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        GENERATOR, "generate", "--path", str(document), "--meta", "none", "--output-path", str(folder / PACKAGE),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(folder)})
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode(errors="replace")
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(package: Any, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


async def test_a_generated_client_takes_a_consultation_from_registration_to_closure(
        stack: Stack, client_package: Any) -> None:
    models = _module(client_package, "models")
    intake = _module(client_package, "api.intake.register_case")
    get_case = _module(client_package, "api.cases.get_case")
    answer = _module(client_package, "api.actions.act_answer_consultation")
    return_visit = _module(client_package, "api.actions.act_record_return_visit")

    token = stack.auth(OPERATOR)["Authorization"].removeprefix("Bearer ")
    # The app in-process, through the transport the other API tests use; the client's own httpx
    # client carries the token.
    client = client_package.AuthenticatedClient(base_url="http://api", token=token,
                                                httpx_args={"transport": stack.http._transport})

    body = models.Intake(
        channel=models.Channel.ONLINE, caller=models.Caller(name="李四", phone="0531-86012348"),
        region_code="370102", category=models.Category.CONSULTATION,
        dispute_type=models.DisputeType.MARRIAGE_FAMILY, description=f"离婚后孩子抚养费标准如何确定？{uuid.uuid4().hex[:8]}")
    opened = await intake.asyncio_detailed(client=client, body=body, idempotency_key=f"client-{uuid.uuid4()}")
    assert opened.status_code == 201, opened.content
    case = opened.parsed
    assert isinstance(case, models.CaseDetail) and case.stage == models.Stage.TRIAGE
    assert case.caller.to_dict()["phone"] == "+8653186012348"  # stored in E.164; the operator sees it in full

    answered = await answer.asyncio_detailed(case.case_id, client=client,
                                             body=models.AnswerConsultationBody(answer="按当地标准协商，可申请调解。"))
    assert answered.status_code == 200, answered.content
    assert answered.parsed.stage == models.Stage.FOLLOW_UP  # the return visit is the follow-up

    closed = await return_visit.asyncio_detailed(case.case_id, client=client,
                                                 body=models.RecordReturnVisitBody(satisfaction=5))
    assert closed.status_code == 200, closed.content
    assert closed.parsed.stage == models.Stage.CLOSED and closed.parsed.closed_at

    read = await get_case.asyncio_detailed(case.case_id, client=client)
    assert read.status_code == 200 and read.parsed.stage == models.Stage.CLOSED and read.parsed.satisfaction == 5

    # An error comes back as the one error model the document declares.
    refused = await answer.asyncio_detailed(case.case_id, client=client,
                                            body=models.AnswerConsultationBody(answer="再答一次"))
    assert refused.status_code == 409 and isinstance(refused.parsed, models.ErrorBody)
    assert "closed" in refused.parsed.detail
