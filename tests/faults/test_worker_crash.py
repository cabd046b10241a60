"""The worker is SIGKILLed while ten actions are under way, and comes back a few seconds later."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.faults.conftest import SUPERVISOR, FaultStack, assert_allowed, new_key, until

pytestmark = pytest.mark.faults

CASES = 10
KILL_AFTER_SECONDS = 0.3
DOWN_FOR_SECONDS = 3.0
RECOVERY_SECONDS = 120.0  # an activity cut short by the kill is retried after its 30 s start-to-close timeout


async def test_actions_survive_a_worker_killed_mid_flight(stack: FaultStack) -> None:
    case_ids = [await stack.open_case() for _ in range(CASES)]
    keys = {case_id: new_key() for case_id in case_ids}

    def send(case_id: str) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(stack.http.post(f"/cases/{case_id}/actions/send_to_mediation", json={},
                                                   headers=stack.auth(key=keys[case_id])))

    sent = [send(case_id) for case_id in case_ids]
    await asyncio.sleep(KILL_AFTER_SECONDS)
    await stack.kill_worker()
    await asyncio.sleep(DOWN_FOR_SECONDS)
    await stack.start_worker()
    first = dict(zip(case_ids, await asyncio.gather(*sent)))

    statuses = Counter(assert_allowed(r, accepted_location=f"/cases/{case_id}") for case_id, r in first.items())
    print(f"answers while the worker was killed: {dict(statuses)}")
    for case_id, response in first.items():
        if response.status_code == 202:
            assert response.json()["request_id"] == keys[case_id]
        if response.status_code in (200, 202):
            assert response.headers["Idempotency-Key"] == keys[case_id]

    # Recovery: the same request with the same key answers with the result (a 503's action may
    # not have reached the case yet: this retry delivers it; a 202's is read back).
    deadline = time.monotonic() + RECOVERY_SECONDS
    results = {}
    for case_id in case_ids:
        while True:
            response = await stack.http.post(f"/cases/{case_id}/actions/send_to_mediation", json={},
                                             headers=stack.auth(key=keys[case_id]))
            if assert_allowed(response) == 200:
                results[case_id] = response.json()
                break
            assert time.monotonic() < deadline, f"case {case_id}: still {response.status_code} after recovery"
            await asyncio.sleep(min(float(response.headers.get("Retry-After", 1)), 2.0))

    for case_id, result in results.items():
        assert result["stage"] == "mediation" and result["mediator"] is not None, result
        if first[case_id].status_code == 200:  # an answer given before the kill is the result
            assert first[case_id].json()["mediator"] == result["mediator"]

    # Each action applied exactly once, each mediator chosen once; the read model has caught up.
    await until("every case projected in mediation with its mediator",
                lambda: all(r.stage == "mediation" and r.mediator_id for r in stack.case_rows(case_ids)), 30)
    assert stack.event_counts(case_ids, "sent_to_mediation") == dict.fromkeys(case_ids, 1)
    assert stack.event_counts(case_ids, "mediator_assigned") == dict.fromkeys(case_ids, 1)
    assert {r.case_id: r.mediator_id for r in stack.case_rows(case_ids)} == {
        case_id: result["mediator"]["id"] for case_id, result in results.items()}


async def test_an_action_no_worker_takes_up_answers_503_and_its_retry_applies_it_once(stack: FaultStack) -> None:
    case_id, key = await stack.open_case(), new_key()
    url = f"/cases/{case_id}/actions/send_to_mediation"
    await stack.kill_worker()

    began = time.monotonic()
    refused = await asyncio.gather(*(stack.http.post(url, json={}, headers=stack.auth(key=key)) for _ in range(3)))
    assert [assert_allowed(r) for r in refused] == [503] * 3, [r.text for r in refused]
    assert time.monotonic() - began < 5 + 5  # the API's wait for a worker to take it up, and little more

    await stack.start_worker()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:  # the server may hand the first delivery over meanwhile: the key keeps it to one
        response = await stack.http.post(url, json={}, headers=stack.auth(key=key))
        if assert_allowed(response) == 200:
            break
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(1)
    assert response.json()["stage"] == "mediation" and response.json()["mediator"] is not None
    await until("the case projected in mediation",
                lambda: stack.case_rows([case_id])[0].mediator_id is not None, 30)
    assert stack.event_counts([case_id], "sent_to_mediation") == {case_id: 1}
    assert stack.event_counts([case_id], "mediator_assigned") == {case_id: 1}


async def test_an_action_sent_without_a_key_answers_503_with_the_key_to_retry_with(stack: FaultStack) -> None:
    """Without an Idempotency-Key the API makes one up; a 503 must name it, or the caller cannot
    retry safely: the server may still hand the first delivery to a worker, and a retry under a new
    key would then act twice (here: a deadline extended twice)."""
    case_id = await stack.open_case()
    case = (await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))).json()
    url = f"/cases/{case_id}/actions/extend_clock"
    body = {"clock_id": case["clocks"][0]["clock_id"], "by": {"amount": 2, "unit": "working_days"},
            "reason": "caller abroad"}
    await stack.kill_worker()

    refused = await stack.http.post(url, json=body, headers=stack.auth(SUPERVISOR))
    assert assert_allowed(refused) == 503, refused.text
    key = refused.headers.get("Idempotency-Key")
    assert key, f"a 503 without the Idempotency-Key it was given: {dict(refused.headers)}"

    await stack.start_worker()
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        response = await stack.http.post(url, json=body, headers=stack.auth(SUPERVISOR, key=key))
        if assert_allowed(response) == 200:
            break
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(1)
    await until("the extension in the read model", lambda: stack.event_counts([case_id], "clock_extended")[case_id], 30)
    await asyncio.sleep(1)
    assert stack.event_counts([case_id], "clock_extended") == {case_id: 1}
