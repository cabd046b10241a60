"""`POST /cases/{id}/drill`: the clocks' future, if nobody acts and after an action, with nothing recorded."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio.api.enums.v1 import EventType

from disputeflow.contracts import workflow_id_for
from tests.api.conftest import AUDITOR, MEDIATOR_2, OPERATOR, SUPERVISOR, Stack


async def _history_length(stack: Stack, case_id: str) -> int:
    """The length of the case's history once its workflow is idle (the last task completed, no
    activity running: the first projection's completion may still be arriving)."""
    handle = stack.env.client.get_workflow_handle(workflow_id_for(case_id))
    last = -1
    for _ in range(100):
        history = await handle.fetch_history()
        described = await handle.describe()
        idle = (history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                and not described.raw_description.pending_activities)
        if idle and len(history.events) == last:
            return last
        last = len(history.events)
        await asyncio.sleep(0.05)
    raise AssertionError(f"case {case_id} did not settle")


async def test_a_drill_lists_what_is_to_come_and_records_nothing(stack: Stack) -> None:
    case = await stack.open_case(urgency="emergency")
    case_id = case["case_id"]
    opened = datetime.fromisoformat(case["opened_at"])
    events_before = len(stack.events(case_id))
    length = await _history_length(stack, case_id)

    response = await stack.http.post(f"/cases/{case_id}/drill", json={}, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["if_you_act"] is None and answer["stage"] == "triage"
    em = [(e["kind"], datetime.fromisoformat(e["at"]) - opened) for e in answer["if_nobody_acts"]["events"]
          if e["clock"] == "emergency_response"]
    assert em == [("warning", timedelta(minutes=30)), ("breach", timedelta(hours=1))]
    assert any(e["kind"] == "escalation" for e in answer["if_nobody_acts"]["events"])

    clock_id = next(c["clock_id"] for c in answer["if_nobody_acts"]["open_clocks"] if c["clock"] == "emergency_response")
    action = {"type": "extend_clock", "clock_id": clock_id, "by": {"amount": 2, "unit": "calendar_hours"},
              "reason": "民警已到场"}
    response = await stack.http.post(f"/cases/{case_id}/drill", json={"action": action}, headers=stack.auth(SUPERVISOR))
    assert response.status_code == 200, response.text
    breach = next(e for e in response.json()["if_you_act"]["events"] if e["kind"] == "breach")
    assert datetime.fromisoformat(breach["at"]) - opened == timedelta(hours=3)

    # an operator may not extend a deadline: the rule's words, 409
    response = await stack.http.post(f"/cases/{case_id}/drill", json={"action": action}, headers=stack.auth(OPERATOR))
    assert response.status_code == 409 and "an operator cannot extend a deadline" in response.json()["detail"]
    # auditors do not drill; a mediator not on the case does not see it
    assert (await stack.http.post(f"/cases/{case_id}/drill", json={}, headers=stack.auth(AUDITOR))).status_code == 403
    assert (await stack.http.post(f"/cases/{case_id}/drill", json={},
                                  headers=stack.auth(MEDIATOR_2))).status_code == 404

    # nothing happened to the case: its history, its read model, its clock
    assert await _history_length(stack, case_id) == length
    assert len(stack.events(case_id)) == events_before
    detail = (await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))).json()
    assert next(c for c in detail["clocks"] if c["clock_id"] == clock_id)["due_at"] == \
        next(c for c in answer["if_nobody_acts"]["open_clocks"] if c["clock_id"] == clock_id)["due_at"]


async def test_a_drill_of_a_session_outcome_on_a_mediation_case(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    mediator = (case["mediator"]["id"], "mediator", "370102")
    response = await stack.http.post(f"/cases/{case['case_id']}/drill", headers=stack.auth(mediator), json={
        "action": {"type": "record_mediation_session", "outcome": "agreement"}})
    assert response.status_code == 200, response.text
    after = response.json()["if_you_act"]
    assert after["stage_after_action"] == "agreement"
    assert {c["clock"] for c in after["open_clocks"]} == {"judicial_confirmation_window", "performance_check"}
    detail = (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(SUPERVISOR))).json()
    assert detail["stage"] == "mediation" and not detail["progress"]["mediation"]["sessions"]


async def test_a_legacy_case_cannot_be_drilled_and_says_why(stack: Stack) -> None:
    import uuid

    from disputeflow.contracts import CaseInput
    from disputeflow.domain.intake import Intake
    from tests.api.conftest import intake_body

    case_id = f"370102-20261130-{uuid.uuid4().int % 10_000:04d}L"
    handle = await stack.env.client.start_workflow(
        "CaseWorkflow", CaseInput(case_id=case_id, intake=Intake.model_validate(intake_body())),
        id=workflow_id_for(case_id), task_queue=stack.settings.temporal_task_queue)
    try:
        await stack.projected(case_id)
        response = await stack.http.post(f"/cases/{case_id}/drill", json={}, headers=stack.auth(SUPERVISOR))
        assert response.status_code == 409, response.text
        assert "legacy workflow type" in response.json()["detail"]
    finally:
        await handle.terminate("test finished")
