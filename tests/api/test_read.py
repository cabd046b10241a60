"""Reading: one case (live, or from the read model once closed), listings with search and keyset
paging, and inboxes."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from disputeflow.domain.calendar import SHANGHAI
from tests.api.conftest import OFFICER, OPERATOR, OTHER_OPERATOR, OTHER_SUPERVISOR, SUPERVISOR, Stack


def _day(case: dict) -> date:
    return datetime.fromisoformat(case["opened_at"]).astimezone(SHANGHAI).date()


async def _list(stack: Stack, who=SUPERVISOR, **params) -> dict:
    response = await stack.http.get("/cases", params=params, headers=stack.auth(who))
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_case_live_then_from_the_read_model(stack: Stack) -> None:
    case = await stack.open_case(category="consultation", dispute_type="contract_debt")
    live = (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(OPERATOR))).json()
    assert live["source"] == "workflow" and live["progress"] is not None
    await stack.act(case["case_id"], "answer_consultation", {"answer": "可依合同约定主张违约金"})
    await stack.act(case["case_id"], "record_return_visit", {"satisfaction": 4, "comment": "满意"})
    await stack.projected(case["case_id"], lambda r: r.closed_at is not None)
    closed = (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(OPERATOR))).json()
    assert closed["source"] == "read_model" and closed["progress"] is None
    assert closed["stage"] == "closed" and closed["final_outcome"] == "consultation_answered"
    assert closed["satisfaction"] == 4 and closed["tasks"] == []
    assert [e["type"] for e in closed["timeline"]] == stack.events(case["case_id"])
    assert closed["timeline"][-1]["type"] == "case_closed"
    assert {c["status"] for c in closed["clocks"]} == {"met"}
    assert {c["clock_id"] for c in closed["clocks"]} >= {c["clock_id"] for c in live["clocks"]}
    assert closed["stage_entered_at"] == closed["closed_at"]


async def test_unknown_case_is_404(stack: Stack) -> None:
    response = await stack.http.get("/cases/370102-20000101-0042", headers=stack.auth(SUPERVISOR))
    assert response.status_code == 404 and response.json() == {"detail": "case 370102-20000101-0042 not found"}


async def test_search_filters_and_keyset_paging(stack: Stack) -> None:
    marker = "m" + uuid.uuid4().hex[:9]  # never all digits: a phone-like search text searches phones
    first = await stack.open_case(description=f"拖欠工资 {marker}")
    second = await stack.open_case(description=f"邻里纠纷 {marker}", dispute_type="neighbours", urgency="urgent")
    third = await stack.open_in_mediation()
    third_id = third["case_id"]
    await stack.projected(second["case_id"])

    page = await _list(stack, q=marker, limit=1)
    seen = [item["case_id"] for item in page["items"]]
    while page["next_cursor"]:
        page = await _list(stack, q=marker, limit=1, cursor=page["next_cursor"])
        seen += [item["case_id"] for item in page["items"]]
    assert seen == [second["case_id"], first["case_id"]]  # newest first, each once

    assert [c["case_id"] for c in (await _list(stack, q=marker, urgency="urgent"))["items"]] == [second["case_id"]]
    assert [c["case_id"] for c in (await _list(stack, q=marker, dispute_type="neighbours"))["items"]] == [
        second["case_id"]]
    day = _day(first)
    assert len((await _list(stack, q=marker, opened_from=day, opened_to=day))["items"]) == 2
    assert (await _list(stack, q=marker, opened_to=day - timedelta(days=1)))["items"] == []
    assert (await _list(stack, q=marker, opened_from=day + timedelta(days=1)))["items"] == []
    assert len((await _list(stack, q=marker, region="370102", breached=False, stage="triage",
                            phase="triage", category="dispute"))["items"]) == 2
    assert (await _list(stack, q=marker, stage="mediation"))["items"] == []
    mediator = third["mediator"]["id"]
    assert third_id in [c["case_id"] for c in (await _list(stack, assignee=mediator, stage="mediation",
                                                           limit=100))["items"]]
    # the caller's name is searched too; LIKE's wildcards are taken literally
    named = await stack.open_case(caller={"name": f"欧阳_{marker[:4]}%", "phone": "13900001111"})
    assert [c["case_id"] for c in (await _list(stack, q=f"_{marker[:4]}%"))["items"]] == [named["case_id"]]
    assert (await _list(stack, q=f"x{marker[:4]}%"))["items"] == []


async def test_listing_scope(stack: Stack) -> None:
    marker = "m" + uuid.uuid4().hex[:9]  # never all digits: a phone-like search text searches phones
    await stack.open_case(description=f"本辖区 {marker}")
    assert len((await _list(stack, OPERATOR, q=marker))["items"]) == 1
    assert (await _list(stack, OTHER_OPERATOR, q=marker))["items"] == []
    assert (await _list(stack, OTHER_SUPERVISOR, q=marker))["items"] == []
    response = await stack.http.get("/cases", params={"region": "1101"}, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 403 and "outside your region 3701" in response.json()["detail"]
    assert len((await _list(stack, SUPERVISOR, q=marker, region="37"))["items"]) == 1  # wider: still yours
    # a mediator sees only the cases assigned to them
    mine = await stack.open_in_mediation()
    mediator = (mine["mediator"]["id"], "mediator", "370102")
    listed = {c["case_id"] for c in (await _list(stack, mediator, limit=100))["items"]}
    assert mine["case_id"] in listed
    assert all(c["mediator_id"] == mediator[0] for c in (await _list(stack, mediator, limit=100))["items"])


async def test_bad_cursor_and_limits_are_named(stack: Stack) -> None:
    for params, loc in (({"cursor": "bm90LWEtY3Vyc29y"}, ["query", "cursor"]),
                        ({"cursor": "%%%"}, ["query", "cursor"]),
                        ({"cursor": "WyIyMDI2LTExLTMwVDA1OjE2OjM3IiwgMV0"}, ["query", "cursor"]),  # naive, not str
                        ({"limit": 101}, ["query", "limit"]),
                        ({"limit": 0}, ["query", "limit"]),
                        ({"stage": "limbo"}, ["query", "stage"]),
                        ({"opened_from": "2026-02-30"}, ["query", "opened_from"]),
                        ({"opened_to": "0001-01-01"}, ["query", "opened_to"]),
                        ({"region": "3"}, ["query", "region"]),
                        ({"breached": "maybe"}, ["query", "breached"]),
                        ({"q": ""}, ["query", "q"])):
        response = await stack.http.get("/cases", params=params, headers=stack.auth(SUPERVISOR))
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"][0]["loc"] == loc


async def test_inboxes(stack: Stack) -> None:
    triage = await stack.open_case()
    in_mediation = await stack.open_in_mediation()
    mediator = (in_mediation["mediator"]["id"], "mediator", "370102")

    inbox = (await stack.http.get("/me/tasks", params={"limit": 100}, headers=stack.auth(mediator))).json()
    assert inbox["items"] and all(i["task"]["assignee_id"] == mediator[0] for i in inbox["items"])
    mine = next(i for i in inbox["items"] if i["case_id"] == in_mediation["case_id"])
    assert mine["task"]["kind"] == "hold_mediation_session" and mine["stage"] == "mediation"
    assert mine["caller_name"] == "张三" and mine["urgency"] == "normal"

    ops = (await stack.http.get("/me/tasks", params={"limit": 100}, headers=stack.auth(OPERATOR))).json()
    assert triage["case_id"] in {i["case_id"] for i in ops["items"]}
    assert all(i["task"]["assignee_role"] == "operator" and i["region_code"].startswith("370102")
               for i in ops["items"])
    dues = [i["task"]["due_at"] for i in ops["items"]]
    assert dues == sorted(dues, key=lambda d: (d is None, d))  # soonest first, none last
    paged = (await stack.http.get("/me/tasks", params={"limit": 1, "offset": 1}, headers=stack.auth(OPERATOR))).json()
    assert paged["total"] == ops["total"] and [i["task"] for i in paged["items"]] == [ops["items"][1]["task"]]
    others = (await stack.http.get("/me/tasks", headers=stack.auth(OTHER_OPERATOR))).json()
    assert triage["case_id"] not in {i["case_id"] for i in others["items"]}
    officer = (await stack.http.get("/me/tasks", headers=stack.auth(OFFICER))).json()
    assert all(i["task"]["assignee_role"] == "legal_aid_officer" for i in officer["items"])
