"""Refused transitions leave no trace; duplicate requests change a case once; long cases continue as new."""

from __future__ import annotations

import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from tests.workflows.conftest import OFFICER, OPERATOR, SUPERVISOR, CaseDriver, mediator


async def refused(driver: CaseDriver, handle, actor, command) -> str:
    request_id = uuid.uuid4().hex
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await driver.act(handle, actor, command, request_id=request_id)
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert all(e.workflow_execution_update_accepted_event_attributes.protocol_instance_id != request_id
               for e in accepted), "a refused request must not be written to history"
    return str(caught.value.cause)


async def test_refusals_say_why_and_change_nothing(driver: CaseDriver) -> None:
    handle = await driver.open()
    before = await driver.view(handle)

    message = await refused(driver, handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 5})
    assert "stage 'triage'" in message and "follow_up" in message
    message = await refused(driver, handle, OFFICER, {"type": "send_to_mediation"})
    assert "a legal_aid_officer cannot send a case to mediation" in message
    message = await refused(driver, handle, mediator("med-370102-01"), {"type": "record_mediation_session", "outcome": "agreement"})
    assert "not assigned" in message
    outsider = OPERATOR.model_copy(update={"region_code": "110105"})
    message = await refused(driver, handle, outsider, {"type": "send_to_mediation"})
    assert "outside your region" in message

    after = await driver.view(handle)
    assert after.timeline == before.timeline and after.stage == "triage"


async def test_cannot_approve_an_ineligible_application(driver: CaseDriver) -> None:
    handle = await driver.open(category="legal_aid", dispute_type="contract_debt", special_groups=[])
    await driver.act(handle, OPERATOR, {"type": "open_legal_aid"})
    message = await refused(driver, handle, OFFICER, {"type": "decide_legal_aid", "approve": True, "reason": "x"})
    assert "assess eligibility" in message
    await driver.act(handle, OFFICER, {"type": "assess_eligibility", "monthly_income_per_capita": 99999})
    message = await refused(driver, handle, OFFICER, {"type": "decide_legal_aid", "approve": True, "reason": "x"})
    assert "not eligible" in message and "threshold" in message


async def test_a_named_person_who_does_not_serve_here_is_recorded_and_left_to_a_supervisor(driver: CaseDriver) -> None:
    """The API refuses an unknown person at once (409); one who stops serving between that check and
    the workflow's own look-up is recorded, and the case waits for someone to be assigned by hand."""
    handle = await driver.open()
    await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    view = await driver.act(handle, SUPERVISOR, {"type": "reassign_mediator", "mediator_id": "med-nobody", "reason": "x"})
    assert view.stage == "mediation" and view.mediator is None and view.wanted is None
    (missing,) = [e for e in view.timeline if e.type == "mediator_not_found"]
    assert missing.data["person_id"] == "med-nobody" and missing.actor is None
    assert [t.kind for t in view.tasks] == ["assign_mediator"]
    done = await driver.act(handle, SUPERVISOR, {"type": "reassign_mediator", "reason": "另选调解员"})
    assert done.mediator is not None


async def test_the_same_request_twice_changes_the_case_once(driver: CaseDriver) -> None:
    handle = await driver.open()
    first = await driver.act(handle, OPERATOR, {"type": "refer", "body": "court", "organisation": "法院"}, request_id="req-1")
    second = await driver.act(handle, OPERATOR, {"type": "refer", "body": "court", "organisation": "法院"}, request_id="req-1")
    assert second.timeline == first.timeline
    assert [e.type for e in second.timeline].count("referred") == 1
    # a retried request that would no longer be allowed is still answered, not refused
    await driver.act(handle, OPERATOR, {"type": "record_referral_outcome", "accepted": True}, request_id="req-2")
    again = await driver.act(handle, OPERATOR, {"type": "record_referral_outcome", "accepted": True}, request_id="req-2")
    assert again.stage == "follow_up"
    assert driver.event_types(again.case_id).count("referral_accepted") == 1


async def test_only_a_supervisor_pauses_a_mediation_deadline(driver: CaseDriver) -> None:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    clock = next(c for c in view.clocks if c.name == "mediation_conclusion")
    pause = {"type": "pause_clock", "clock_id": clock.clock_id, "reason": "awaiting_party"}
    assert "a mediator cannot pause a clock" in await refused(driver, handle, mediator(view.mediator.id), pause)
    assert "only legal-aid clocks" in await refused(driver, handle, OFFICER, pause)
    view = await driver.act(handle, SUPERVISOR, pause)
    assert next(c for c in view.clocks if c.clock_id == clock.clock_id).paused
