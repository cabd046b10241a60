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
    # One registers the case (201); the others find it (200), or answer 503 if its workflow could
    # not show it to them in time (a case not yet in the read model is read from its workflow).
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 503}, statuses
    answered = [r for r in responses if r.status_code in (200, 201)]
    case_ids = {r.json()["case_id"] for r in answered}
    assert len(case_ids) == 1, case_ids
    (case_id,) = case_ids
    assert all(r.headers["Location"] == f"/cases/{case_id}" for r in answered)
    retried = await stack.http.post("/cases", json=body, headers=stack.auth(key=key))
    assert retried.status_code == 200 and retried.json()["case_id"] == case_id, retried.text

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
    # Every 200 is the same result (on a healthy stack all ten are; a slow worker may make some 202 or 503).
    results = [r for r in responses if r.status_code == 200]
    assert results, [(r.status_code, r.text[:200]) for r in responses]
    states = {(r.json()["stage"], r.json()["mediator"]["id"]) for r in results}
    assert len(states) == 1 and next(iter(states))[0] == "mediation", states
    assert {r.headers["Idempotency-Key"] for r in responses if r.status_code != 503} == {key}

    again = await stack.http.post(url, json={}, headers=stack.auth(key=key))  # after the fact: the same answer
    assert again.status_code == 200 and (again.json()["stage"], again.json()["mediator"]["id"]) in states
    assert stack.event_counts([case_id], "sent_to_mediation") == {case_id: 1}
    assert stack.event_counts([case_id], "mediator_assigned") == {case_id: 1}
