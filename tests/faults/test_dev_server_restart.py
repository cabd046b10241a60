"""The dev server stopped and started again on the same file while cases are open: meanwhile reads
come from the read model and actions and intake answer 503; afterwards no case is lost, a clock due
meanwhile still fires, once, and the refused requests retried with their keys take effect once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.faults.conftest import EMERGENCY_SECONDS, SUPERVISOR, FaultStack, assert_allowed, intake_body, new_key, until

pytestmark = pytest.mark.faults

DOWN_FOR_SECONDS = EMERGENCY_SECONDS  # the emergency clocks fall due while the server is down


async def test_cases_and_clocks_survive_a_dev_server_restart(stack: FaultStack) -> None:
    normal = [await stack.open_case() for _ in range(3)]
    emergency = list(await asyncio.gather(*(stack.open_case(urgency="emergency", dispute_type="neighbours")
                                            for _ in range(3))))
    case_ids = normal + emergency
    due = stack.query("SELECT due_at FROM clocks WHERE case_id IN :ids AND name = 'emergency_response'", ids=emergency)

    stopped_at = datetime.now(UTC)
    await stack.stop_temporal()
    # While it is down: a read comes from the read model, an action and an intake answer 503.
    read = await stack.http.get(f"/cases/{normal[0]}", headers=stack.auth(SUPERVISOR))
    assert assert_allowed(read) == 200 and read.json()["source"] == "read_model", read.text
    acted = await stack.http.post(f"/cases/{normal[1]}/actions/send_to_mediation", json={},
                                  headers=stack.auth(key=(action_key := new_key())))
    assert assert_allowed(acted) == 503, acted.text
    body, intake_key = intake_body(), new_key()
    registered = await stack.http.post("/cases", json=body, headers=stack.auth(key=intake_key))
    assert assert_allowed(registered) == 503, registered.text
    await asyncio.sleep(max(0.0, DOWN_FOR_SECONDS - (datetime.now(UTC) - stopped_at).total_seconds()))
    await stack.start_temporal()
    assert len(due) == 3 and all(datetime.fromisoformat(d.due_at).replace(tzinfo=UTC) > stopped_at for d in due)

    async def answers_live(case_id: str) -> bool:
        response = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))
        assert assert_allowed(response) == 200
        return response.json()["source"] == "workflow"

    for case_id in case_ids:  # every case still there, answering from its workflow
        await until(f"case {case_id} answers from its workflow", lambda: answers_live(case_id), 60, pause=0.5)

    await until("the emergency clocks breached",
                lambda: stack.event_counts(emergency, "clock_breached") == dict.fromkeys(emergency, 1), 60, pause=0.5)
    await asyncio.sleep(2)  # room for a second firing to show, were there one
    once = dict.fromkeys(emergency, 1)
    assert stack.event_counts(emergency, "clock_breached") == once
    assert stack.event_counts(emergency, "escalated") == once
    assert stack.outbox_counts(emergency, "deadline_breached") == once
    assert stack.event_counts(normal, "clock_breached") == dict.fromkeys(normal, 0)
    assert stack.event_counts(case_ids, "case_registered") == dict.fromkeys(case_ids, 1)
    assert {r.case_id: r.stage for r in stack.case_rows(case_ids)} == (
        dict.fromkeys(normal, "triage") | dict.fromkeys(emergency, "escalated"))  # nothing acted while down

    # And the restarted server takes new work: the refused action and intake, retried with their keys.
    response = await stack.http.post(f"/cases/{normal[1]}/actions/send_to_mediation", json={},
                                     headers=stack.auth(key=action_key))
    assert assert_allowed(response) == 200 and response.json()["stage"] == "mediation", response.text
    registered = await stack.http.post("/cases", json=body, headers=stack.auth(key=intake_key))
    assert registered.status_code == 201, registered.text
    case_id = registered.json()["case_id"]
    await until("the new case in the read model", lambda: stack.case_rows([case_id]), 30)
    assert [r.case_id for r in stack.query("SELECT case_id FROM cases WHERE description = :d",
                                           d=body["description"])] == [case_id]
    assert stack.event_counts([normal[1]], "sent_to_mediation") == {normal[1]: 1}
