"""The same intake, and the same action, delivered concurrently: one case, one application."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import FaultStack, assert_allowed, intake_body, new_key, until

pytestmark = pytest.mark.faults

COPIES = 10


async def test_the_same_intake_ten_times_at_once_makes_one_case(stack: FaultStack) -> None:
    body, key = intake_body(), new_key()
    responses = await asyncio.gather(*(stack.http.post("/cases", json=body, headers=stack.auth(key=key))
                                       for _ in range(COPIES)))

    statuses = sorted(assert_allowed(r) for r in responses)
    assert statuses == [200] * (COPIES - 1) + [201], [(r.status_code, r.text[:200]) for r in responses]
    case_ids = {r.json()["case_id"] for r in responses}
    assert len(case_ids) == 1, case_ids
    (case_id,) = case_ids
    assert all(r.headers["Location"] == f"/cases/{case_id}" for r in responses)

    await until("the case in the read model", lambda: stack.case_rows([case_id]), 30)
    assert [row.case_id for row in stack.query("SELECT case_id FROM cases WHERE description = :d",
                                               d=body["description"])] == [case_id]
    assert stack.event_counts([case_id], "case_registered") == {case_id: 1}


async def test_the_same_action_ten_times_at_once_is_applied_once(stack: FaultStack) -> None:
    case_id = await stack.open_case()
    key = new_key()
    url = f"/cases/{case_id}/actions/send_to_mediation"
    responses = await asyncio.gather(*(stack.http.post(url, json={}, headers=stack.auth(key=key))
                                       for _ in range(COPIES)))

    statuses = [assert_allowed(r) for r in responses]
    assert set(statuses) <= {200, 202, 503}, statuses
    # On a healthy stack the action finishes well within the API's wait: all ten see its result.
    assert statuses == [200] * COPIES, [(r.status_code, r.text[:200]) for r in responses]
    states = {(r.json()["stage"], r.json()["mediator"]["id"]) for r in responses}
    assert len(states) == 1 and next(iter(states))[0] == "mediation", states
    assert {r.headers["Idempotency-Key"] for r in responses} == {key}

    again = await stack.http.post(url, json={}, headers=stack.auth(key=key))  # after the fact: the same answer
    assert again.status_code == 200 and (again.json()["stage"], again.json()["mediator"]["id"]) in states
    assert stack.event_counts([case_id], "sent_to_mediation") == {case_id: 1}
    assert stack.event_counts([case_id], "mediator_assigned") == {case_id: 1}
