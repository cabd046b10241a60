"""Masking by role through the API, the identity card number, and the read log (GET /audit/reads)."""

from __future__ import annotations

import uuid

from sqlmodel import Session, select

from disputeflow.db.models import CallerDataRead
from tests.api.conftest import AUDITOR, OFFICER, OPERATOR, OTHER_AUDITOR, SUPERVISOR, Stack, intake_body

ID_NUMBER = "11010519491231002X"


def _phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


async def _get(stack: Stack, case_id: str, who) -> dict:
    response = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(who))
    assert response.status_code == 200, response.text
    return response.json()


def _reads(stack: Stack, case_id: str) -> list[CallerDataRead]:
    with Session(stack.engine) as session:
        return list(session.exec(select(CallerDataRead).where(CallerDataRead.case_id == case_id)
                                 .order_by(CallerDataRead.id)))


async def test_each_role_sees_the_caller_as_the_table_says(stack: Stack) -> None:
    phone = _phone()
    case = await stack.open_case(caller={"name": "王小五", "phone": phone})
    case_id = case["case_id"]
    full = {"name": "王小五", "phone": f"+86{phone}"}
    masked = {"name": "王**", "phone": f"{phone[:3]}****{phone[-4:]}"}
    assert case["caller"] == full  # the operator registering it, in triage
    # triage: the region's operator and supervisor in full; the legal-aid officer and the auditor masked
    assert (await _get(stack, case_id, OPERATOR))["caller"] == full
    assert (await _get(stack, case_id, SUPERVISOR))["caller"] == full
    assert (await _get(stack, case_id, OFFICER))["caller"] == masked
    assert (await _get(stack, case_id, AUDITOR))["caller"] == masked
    # mediation: the assigned mediator in full, the operator no longer
    response = await stack.act(case_id, "send_to_mediation")
    assert response.status_code == 200, response.text
    mediator = response.json()["mediator"]["id"]
    assert response.json()["caller"] == masked  # the operator's answer to their action: the case left them
    assert (await _get(stack, case_id, (mediator, "mediator", "370102")))["caller"] == full
    assert (await _get(stack, case_id, OPERATOR))["caller"] == masked
    assert (await _get(stack, case_id, AUDITOR))["caller"] == masked
    # listings mask the name the same way
    await stack.projected(case_id, lambda r: r.stage == "mediation")
    for who, name in ((OPERATOR, "王**"), (SUPERVISOR, "王小五"), (AUDITOR, "王**")):
        page = await stack.http.post("/cases/search", json={"phone": phone}, headers=stack.auth(who))
        assert [(c["case_id"], c["caller_name"]) for c in page.json()["items"]] == [(case_id, name)]


async def test_the_identity_card_number_only_for_the_legal_aid_officer_on_legal_aid(stack: Stack) -> None:
    case = await stack.open_case(caller={"name": "李四", "phone": _phone(), "id_number": ID_NUMBER},
                                 category="legal_aid")
    case_id = case["case_id"]
    assert "id_number" not in case["caller"]
    assert "id_number" not in (await _get(stack, case_id, OFFICER))["caller"]  # triage: not yet
    response = await stack.act(case_id, "open_legal_aid", {}, OFFICER)
    assert response.status_code == 200, response.text
    assert response.json()["caller"]["id_number"] == ID_NUMBER
    assert (await _get(stack, case_id, OFFICER))["caller"]["id_number"] == ID_NUMBER
    for who in (OPERATOR, SUPERVISOR, AUDITOR):
        detail = await _get(stack, case_id, who)
        assert "id_number" not in detail["caller"] and ID_NUMBER not in str(detail)
    fields = [r.fields for r in _reads(stack, case_id) if r.user_id == OFFICER[0]]
    assert "name,phone,id_number" in fields


async def test_every_unmasked_read_is_logged_and_auditors_see_the_log(stack: Stack) -> None:
    phone = _phone()
    body, key = intake_body(caller={"name": "赵六", "phone": phone}), f"privacy-{uuid.uuid4().hex}"
    registered = await stack.http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert registered.status_code == 201, registered.text
    case_id = registered.json()["case_id"]
    await stack.projected(case_id)
    # Registering shows the operator what they typed; the case's first event names who registered it.
    assert _reads(stack, case_id) == []
    assert [e["actor_id"] for e in (await _get(stack, case_id, SUPERVISOR))["timeline"][:1]] == [OPERATOR[0]]
    # The same registration again is a read of the stored case, and recorded.
    again = await stack.http.post("/cases", json=body, headers=stack.auth(OPERATOR) | {"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["case_id"] == case_id
    await _get(stack, case_id, AUDITOR)  # masked: not a read of the caller's data
    await stack.http.post("/cases/search", json={"phone": phone}, headers=stack.auth(OPERATOR))
    rows = _reads(stack, case_id)
    assert [(r.user_id, r.role, r.route, r.fields) for r in rows] == [
        (SUPERVISOR[0], "supervisor", "GET /cases/{case_id}", "name,phone"),
        (OPERATOR[0], "operator", "POST /cases", "name,phone"),
        (OPERATOR[0], "operator", "POST /cases/search", "name"),
    ]
    assert all(phone not in f"{r.route}{r.fields}" and "赵六" not in r.route for r in rows)
    log = await stack.http.get("/audit/reads", params={"case_id": case_id}, headers=stack.auth(AUDITOR))
    assert log.status_code == 200, log.text
    body = log.json()
    assert body["total"] == 3 and body["items"][0]["route"] == "POST /cases/search"  # newest first
    assert {i["user_id"] for i in body["items"]} == {OPERATOR[0], SUPERVISOR[0]}
    mine = await stack.http.get("/audit/reads", params={"case_id": case_id, "user_id": SUPERVISOR[0]},
                                headers=stack.auth(AUDITOR))
    assert mine.json()["total"] == 1
    # auditors only, and only for cases in their region
    assert (await stack.http.get("/audit/reads", params={"case_id": case_id},
                                 headers=stack.auth(SUPERVISOR))).status_code == 403
    assert (await stack.http.get("/audit/reads", params={"case_id": case_id},
                                 headers=stack.auth(OTHER_AUDITOR))).status_code == 404


async def test_the_inbox_masks_what_is_not_the_readers(stack: Stack) -> None:
    case = await stack.open_case(caller={"name": "孙七", "phone": _phone()})
    mine, offset = [], 0
    while not mine:
        response = await stack.http.get("/me/tasks", params={"limit": 100, "offset": offset},
                                        headers=stack.auth(OPERATOR))
        assert response.json()["items"], "the case's task is not in the operator's inbox"
        mine = [i for i in response.json()["items"] if i["case_id"] == case["case_id"]]
        offset += 100
    assert mine and mine[0]["caller_name"] == "孙七"  # triage: the operator's task, in full
    assert any(r.route == "GET /me/tasks" for r in _reads(stack, case["case_id"]))


async def test_the_identity_card_number_is_asked_only_for_legal_aid(stack: Stack) -> None:
    refused = await stack.http.post("/cases", json={**intake_body(), "caller": {
        "name": "周八", "phone": _phone(), "id_number": ID_NUMBER}}, headers=stack.auth(OPERATOR))
    assert refused.status_code == 409 and "asked only for a legal-aid application" in refused.json()["detail"]
    assert ID_NUMBER not in refused.text
    # a dispute that becomes a legal-aid application: the number comes with open_legal_aid
    case = await stack.open_case(caller={"name": "周八", "phone": _phone()})
    response = await stack.act(case["case_id"], "open_legal_aid", {"id_number": ID_NUMBER}, OPERATOR)
    assert response.status_code == 200, response.text
    assert "id_number" not in response.json()["caller"]  # the operator gave it, but does not get it back
    assert (await _get(stack, case["case_id"], OFFICER))["caller"]["id_number"] == ID_NUMBER
    # not in the read model's events, nor in the auditors' timeline
    await stack.projected(case["case_id"], lambda r: r.stage == "legal_aid_review")
    timeline = await stack.http.get(f"/cases/{case['case_id']}/timeline", headers=stack.auth(AUDITOR))
    assert timeline.status_code == 200 and ID_NUMBER not in timeline.text
    opened = [e for e in timeline.json()["entries"] if e["kind"] == "action"
              and e["data"]["command"]["type"] == "open_legal_aid"]
    assert opened and opened[0]["data"]["command"]["id_number"] == "***"
    audit = await stack.http.get(f"/cases/{case['case_id']}/audit", headers=stack.auth(AUDITOR))
    assert ID_NUMBER not in audit.text


async def test_reading_a_cases_history_is_logged_by_kind(stack: Stack) -> None:
    """The timeline and the raw history download are reads of the case's data too: who, when, what kind."""
    case_id = (await stack.open_case())["case_id"]
    before = len(_reads(stack, case_id))
    timeline = await stack.http.get(f"/cases/{case_id}/timeline", headers=stack.auth(AUDITOR))
    assert timeline.status_code == 200, timeline.text
    exported = await stack.http.get(f"/cases/{case_id}/history", headers=stack.auth(SUPERVISOR))
    assert exported.status_code == 200, exported.text
    rows = _reads(stack, case_id)[before:]
    assert [(r.user_id, r.role, r.kind, r.route, r.fields) for r in rows] == [
        (AUDITOR[0], "auditor", "timeline", "GET /cases/{case_id}/timeline", "1 run(s)"),
        (SUPERVISOR[0], "supervisor", "history", "GET /cases/{case_id}/history", "run 1"),
    ]
    log = await stack.http.get("/audit/reads", params={"case_id": case_id, "kind": "history"},
                               headers=stack.auth(AUDITOR))
    assert log.status_code == 200, log.text
    [item] = log.json()["items"]
    assert (item["user_id"], item["kind"], item["fields"]) == (SUPERVISOR[0], "history", ["run 1"])
    everything = await stack.http.get("/audit/reads", params={"case_id": case_id}, headers=stack.auth(AUDITOR))
    assert {i["kind"] for i in everything.json()["items"]} == {"timeline", "history"}  # registering is no read (see above)
    # a refused read (another region's auditor: 404) records nothing
    await stack.http.get(f"/cases/{case_id}/timeline", headers=stack.auth(OTHER_AUDITOR))
    assert len(_reads(stack, case_id)) == before + 2
