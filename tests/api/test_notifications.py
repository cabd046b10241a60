"""GET /me/notifications and acknowledging: each person sees what is addressed to them by name,
or to their role in their region, from notifications the workflow really wrote."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from tests.api.conftest import MEDIATOR_1, MEDIATOR_2, OPERATOR, OTHER_SUPERVISOR, SUPERVISOR, Stack

PROVINCE_SUPERVISOR = ("sup-sd", "supervisor", "37")


async def _mine(stack: Stack, who, **params) -> dict:
    response = await stack.http.get("/me/notifications", params=params, headers=stack.auth(who))
    assert response.status_code == 200, response.text
    return response.json()


async def _kinds(stack: Stack, who, case_id: str, **params) -> list[str]:
    return [n["kind"] for n in (await _mine(stack, who, case_id=case_id, **params))["items"]]


async def test_a_mediator_is_told_of_a_case_assigned_to_them(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    case_id, mediator = case["case_id"], case["mediator"]["id"]
    await stack.projected(case_id, lambda r: r.mediator_id == mediator)
    assigned = (mediator, "mediator", "370102")  # the least loaded: which one depends on other tests
    other = MEDIATOR_2 if mediator == MEDIATOR_1[0] else MEDIATOR_1

    (note,) = (await _mine(stack, assigned, case_id=case_id))["items"]
    assert note["kind"] == "case_assigned" and note["recipient_id"] == mediator
    assert note["recipient_role"] == "mediator" and note["region_code"] == "370102"
    assert note["payload"]["stage"] == "mediation" and note["acknowledged_at"] is None
    assert note["delivered_at"] is None  # no webhook in this stack
    # Not for the other mediator, nor for the operator (the note is for a mediator).
    assert await _kinds(stack, other, case_id) == []
    assert await _kinds(stack, OPERATOR, case_id) == []


async def test_supervisors_of_the_region_are_told_of_an_emergency_and_its_breach(stack: Stack) -> None:
    case = await stack.open_case(urgency="emergency", dispute_type="neighbours", description="邻居扬言动手")
    case_id = case["case_id"]
    await stack.env.sleep(timedelta(hours=2))  # the 1-hour emergency clock breaches and escalates
    await stack.projected(case_id, lambda r: r.breached and r.stage == "escalated")

    kinds = await _kinds(stack, SUPERVISOR, case_id)
    assert kinds[-1] == "emergency_registered"  # newest first: the intake is the oldest
    assert {"emergency_registered", "deadline_breached", "case_escalated"} <= set(kinds)
    assert await _kinds(stack, PROVINCE_SUPERVISOR, case_id) == kinds  # the province covers the county
    assert await _kinds(stack, OTHER_SUPERVISOR, case_id) == []  # Beijing's does not
    breach = next(n for n in (await _mine(stack, SUPERVISOR, case_id=case_id))["items"]
                  if n["kind"] == "deadline_breached")
    assert breach["recipient_id"] is None and breach["payload"]["clock"]
    only = await _kinds(stack, SUPERVISOR, case_id, kind="deadline_breached")
    assert only == ["deadline_breached"]


async def test_acknowledging_once_for_the_role(stack: Stack) -> None:
    case = await stack.open_case(urgency="emergency", description="家暴求助，人身危险")
    case_id = case["case_id"]
    await stack.projected(case_id)
    (note,) = (await _mine(stack, SUPERVISOR, case_id=case_id, kind="emergency_registered"))["items"]
    before = (await _mine(stack, SUPERVISOR))["unacknowledged"]

    url = f"/me/notifications/{note['id']}/acknowledge"
    assert (await stack.http.post(url, headers=stack.auth(OTHER_SUPERVISOR))).status_code == 404
    assert (await stack.http.post(url, headers=stack.auth(OPERATOR))).status_code == 404
    response = await stack.http.post(url, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 200, response.text
    acked = response.json()
    assert acked["acknowledged_by"] == SUPERVISOR[0] and acked["acknowledged_at"]

    # For everyone of the role: the province's supervisor sees who took it; acknowledging again
    # changes nothing.
    again = await stack.http.post(url, headers=stack.auth(PROVINCE_SUPERVISOR))
    assert again.status_code == 200 and again.json()["acknowledged_by"] == SUPERVISOR[0]
    assert again.json()["acknowledged_at"] == acked["acknowledged_at"]
    after = await _mine(stack, SUPERVISOR)
    assert after["unacknowledged"] == before - 1
    open_ones = await _mine(stack, SUPERVISOR, case_id=case_id, unacknowledged_only="true")
    assert note["id"] not in {n["id"] for n in open_ones["items"]}


async def test_unknown_and_malformed(stack: Stack) -> None:
    missing = await stack.http.post("/me/notifications/999999999/acknowledge", headers=stack.auth(SUPERVISOR))
    assert missing.status_code == 404 and "999999999" in missing.json()["detail"]
    for params in ({"limit": 0}, {"limit": 1000}, {"kind": "DROP TABLE"}, {"case_id": "../x"}, {"offset": -1}):
        response = await stack.http.get("/me/notifications", params=params, headers=stack.auth(SUPERVISOR))
        assert response.status_code == 422, (params, response.text)
    bad_id = await stack.http.post("/me/notifications/abc/acknowledge", headers=stack.auth(SUPERVISOR))
    assert bad_id.status_code == 422


async def test_paging_is_newest_first_and_stable(stack: Stack) -> None:
    for _ in range(3):
        await stack.projected((await stack.open_case(urgency="emergency"))["case_id"])
    first = await _mine(stack, SUPERVISOR, limit=2)
    second = await _mine(stack, SUPERVISOR, limit=2, offset=2)
    ids = [n["id"] for n in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    assert first["total"] == second["total"] >= 3


async def test_a_notification_the_gateway_refused_says_so(stack: Stack) -> None:
    """The sender parks what the gateway refuses for good (tests/test_notify.py); the feed says why."""
    from datetime import datetime, timezone

    from disputeflow.db.engine import write_session
    from disputeflow.db.models import NotificationParked

    case = await stack.open_case(urgency="emergency", description="群体性讨薪，现场情绪激动")
    await stack.projected(case["case_id"])
    (note,) = (await _mine(stack, SUPERVISOR, case_id=case["case_id"]))["items"]
    assert note["delivery_refused"] is None
    with write_session(stack.engine) as session:
        session.add(NotificationParked(outbox_id=note["id"], reason="HTTP 422 from the webhook: unknown region",
                                       parked_at=datetime.now(timezone.utc)))
    (note,) = (await _mine(stack, SUPERVISOR, case_id=case["case_id"]))["items"]
    assert note["delivery_refused"] == "HTTP 422 from the webhook: unknown region"
    assert note["delivered_at"] is None


async def test_an_emergency_notification_names_the_case_not_the_callers_story(stack: Stack) -> None:
    story = f"家暴求助，人身危险{uuid.uuid4().hex[:6]}"
    case = await stack.open_case(urgency="emergency", description=story)
    (note,) = (await _mine(stack, SUPERVISOR, case_id=case["case_id"], kind="emergency_registered"))["items"]
    assert note["payload"] == {"event_seq": 1, "dispute_type": "labour_wages", "region_code": "370102"}
    assert story[:4] not in json.dumps(note, ensure_ascii=False)
