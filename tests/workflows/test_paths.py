"""Every path of the dispute process, end to end on the time-skipping server.

Each test asserts the stage sequence, the projected read model and the timeline, and (with
DISPUTEFLOW_RECORD_HISTORIES=1) saves its history for the replay tests.
"""

from __future__ import annotations

from datetime import timedelta

from disputeflow.domain.case import CaseView
from tests.workflows.conftest import OFFICER, OPERATOR, SUPERVISOR, CaseDriver, mediator
from tests.workflows.test_clocks import clock_row


def stages(view: CaseView) -> list[str]:
    """The sequence of stages the case went through, from its timeline."""
    seen: list[str] = []
    for event in view.timeline:
        if not seen or seen[-1] != event.stage.value:
            seen.append(event.stage.value)
    return seen


def assert_projected(driver: CaseDriver, view: CaseView) -> None:
    record = driver.record(view.case_id)
    assert record is not None
    assert record.stage == view.stage.value
    assert record.event_count == view.timeline[-1].seq
    assert driver.event_types(view.case_id) == [e.type for e in view.timeline]


async def test_consultation_answered_on_the_spot(driver: CaseDriver) -> None:
    handle = await driver.open(category="consultation", dispute_type="contract_debt", special_groups=[])
    view = await driver.view(handle)
    assert view.stage == "triage"
    assert [t.kind for t in view.tasks] == ["triage"]
    assert view.tasks[0].due_at == next(c.due_at for c in view.clocks if c.name == "triage_response")

    view = await driver.act(handle, OPERATOR, {"type": "answer_consultation", "answer": "可向劳动仲裁委申请仲裁"})
    assert view.stage == "follow_up"
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 5})
    assert view.stage == "closed" and view.final_outcome == "consultation_answered"
    assert stages(view) == ["triage", "follow_up", "closed"]
    result = await handle.result()
    assert result.final_outcome == "consultation_answered"
    assert_projected(driver, view)
    record = driver.record(view.case_id)
    assert record.closed_at is not None and record.satisfaction == 5
    # every clock ended: met when the case left its stage
    assert all(c.status == "met" for c in view.clocks)
    await driver.save_history(handle, "consultation")


async def test_referral_bounced_then_accepted(driver: CaseDriver) -> None:
    handle = await driver.open()
    await driver.act(handle, OPERATOR, {"type": "refer", "body": "labour_arbitration", "organisation": "历下区劳动人事争议仲裁院"})
    view = await driver.act(handle, OPERATOR, {"type": "record_referral_outcome", "accepted": False, "note": "不属于受理范围"})
    assert view.stage == "triage"
    await driver.act(handle, OPERATOR, {"type": "refer", "body": "court", "organisation": "历下区人民法院"})
    view = await driver.act(handle, OPERATOR, {"type": "record_referral_outcome", "accepted": True})
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 4})
    assert stages(view) == ["triage", "referred", "triage", "referred", "follow_up", "closed"]
    assert view.final_outcome == "referred_accepted"
    assert [e.type for e in view.timeline if e.type.startswith("referr")] == [
        "referred", "referral_bounced", "referred", "referral_accepted"]
    assert_projected(driver, view)
    await driver.save_history(handle, "referral")


async def test_mediation_agreement_performed_and_dissatisfied_caller(driver: CaseDriver) -> None:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    assert view.stage == "mediation" and view.mediator is not None
    assigned = view.mediator.id
    assert assigned.startswith("med-370102-")
    assert driver.record(view.case_id).mediator_id == assigned
    me = mediator(assigned)
    view = await driver.act(handle, me, {"type": "record_mediation_session", "outcome": "party_absent"})
    assert view.stage == "mediation" and view.mediation.failed_sessions == 1
    view = await driver.act(handle, me, {"type": "record_mediation_session", "outcome": "agreement", "notes": "分两期支付"})
    assert view.stage == "agreement"
    assert {c.name for c in view.clocks if c.open} == {"judicial_confirmation_window", "performance_check"}
    view = await driver.act(handle, me, {"type": "record_judicial_confirmation", "applied": True, "court": "历下区人民法院"})
    assert {c.name for c in view.clocks if c.open} == {"performance_check"}
    view = await driver.act(handle, me, {"type": "record_performance", "performed": True})
    assert view.stage == "follow_up"
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 2, "comment": "拖得太久"})
    assert view.stage == "supervisor_review"
    view = await driver.act(handle, SUPERVISOR, {"type": "complete_review", "resolution": "已回访解释"})
    assert stages(view) == ["triage", "mediation", "agreement", "follow_up", "supervisor_review", "closed"]
    assert view.final_outcome == "mediated_agreement_performed"
    assert_projected(driver, view)
    await driver.save_history(handle, "mediation_agreement")


async def test_failed_mediation_escalates_then_reassigned_then_referred_out(driver: CaseDriver) -> None:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    first = view.mediator.id
    for _ in range(3):
        view = await driver.act(handle, mediator(first), {"type": "record_mediation_session", "outcome": "no_agreement"})
    assert view.stage == "escalated"
    assert "3 mediation sessions" in view.escalation.reason
    assert [t.kind for t in view.tasks] == ["resolve_escalation"]
    view = await driver.act(handle, SUPERVISOR, {"type": "reassign_mediator", "reason": "换一位资深调解员"})
    assert view.stage == "mediation" and view.mediator.id != first
    view = await driver.act(handle, SUPERVISOR, {"type": "escalate", "reason": "对方拒绝调解"})
    view = await driver.act(handle, SUPERVISOR, {"type": "refer_out", "forum": "arbitration", "legal_aid_offered": True})
    assert view.stage == "follow_up"
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 3})
    assert view.final_outcome == "referred_to_arbitration"
    assert stages(view) == ["triage", "mediation", "escalated", "mediation", "escalated", "follow_up", "closed"]
    assert_projected(driver, view)
    await driver.save_history(handle, "mediation_failed")


async def test_mediation_time_limit_warns_then_escalates(driver: CaseDriver) -> None:
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    clock = next(c for c in view.clocks if c.name == "mediation_conclusion")
    await driver.advance(timedelta(days=31))
    view = await driver.view(handle)
    assert view.stage == "escalated"
    kinds = [(e.type, e.data.get("fraction")) for e in view.timeline if e.data.get("clock_id") == clock.clock_id]
    assert kinds[:4] == [("clock_started", None), ("clock_warning", 0.5), ("clock_warning", 0.8), ("clock_breached", None)]
    breach = next(e for e in view.timeline if e.type == "clock_breached")
    assert breach.at >= clock.due_at
    assert driver.record(view.case_id).breached is True
    await driver.save_history(handle, "mediation_breach")
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})


async def test_legal_aid_with_materials_pause_approval_and_lawyer(driver: CaseDriver) -> None:
    handle = await driver.open(category="legal_aid")
    view = await driver.act(handle, OPERATOR, {"type": "open_legal_aid"})
    assert view.stage == "legal_aid_review"
    decision = next(c for c in view.clocks if c.name == "legal_aid_decision")
    view = await driver.act(handle, OFFICER, {"type": "request_materials", "missing": ["劳动合同", "工资条"]})
    assert next(c for c in view.clocks if c.clock_id == decision.clock_id).paused
    await driver.advance(timedelta(days=10))  # longer than the 7 working days: a paused clock does not breach
    view = await driver.act(handle, OFFICER, {"type": "materials_supplied"})
    resumed = next(c for c in view.clocks if c.clock_id == decision.clock_id)
    assert not resumed.breached and resumed.due_at > decision.due_at
    view = await driver.act(handle, OFFICER, {"type": "assess_eligibility", "monthly_income_per_capita": 9000})
    assert view.legal_aid.assessment.eligible and not view.legal_aid.assessment.means_test_applied
    view = await driver.act(handle, OFFICER, {"type": "decide_legal_aid", "approve": True, "reason": "农民工追索劳动报酬"})
    assert view.stage == "legal_aid_representation" and view.lawyer.id == "law-370102-01"
    view = await driver.act(handle, OFFICER, {"type": "record_legal_aid_outcome", "outcome": "仲裁裁决支付全部工资"})
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 5})
    assert stages(view) == ["triage", "legal_aid_review", "legal_aid_assignment", "legal_aid_representation", "follow_up", "closed"]
    assert view.final_outcome == "legal_aid_completed"
    types = [e.type for e in view.timeline]
    assert types.index("clock_paused") < types.index("clock_resumed") < types.index("legal_aid_approved")
    assert_projected(driver, view)
    await driver.save_history(handle, "legal_aid_approved")


async def test_legal_aid_refused_reviewed_and_upheld(driver: CaseDriver) -> None:
    handle = await driver.open(category="legal_aid", dispute_type="contract_debt", special_groups=[])
    await driver.act(handle, OPERATOR, {"type": "open_legal_aid"})
    view = await driver.act(handle, OFFICER, {"type": "assess_eligibility", "monthly_income_per_capita": 9000})
    assert not view.legal_aid.assessment.eligible
    view = await driver.act(handle, OFFICER, {"type": "decide_legal_aid", "approve": False, "reason": "超过经济困难标准"})
    assert view.stage == "legal_aid_refused"
    view = await driver.act(handle, OPERATOR, {"type": "request_review", "reason": "家庭有重病成员"})
    assert view.stage == "legal_aid_reconsideration"
    view = await driver.act(handle, SUPERVISOR, {"type": "decide_review", "overturn": False, "reason": "维持原决定"})
    view = await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 3})
    assert stages(view) == ["triage", "legal_aid_review", "legal_aid_refused", "legal_aid_reconsideration", "follow_up", "closed"]
    assert view.final_outcome == "legal_aid_refused"
    assert_projected(driver, view)
    await driver.save_history(handle, "legal_aid_refused")


async def test_refusal_review_window_lapses(driver: CaseDriver) -> None:
    handle = await driver.open(category="legal_aid", dispute_type="contract_debt", special_groups=[])
    await driver.act(handle, OPERATOR, {"type": "open_legal_aid"})
    await driver.act(handle, OFFICER, {"type": "decide_legal_aid", "approve": False, "reason": "非法律援助事项"})
    await driver.advance(timedelta(days=16))
    view = await driver.view(handle)
    assert view.stage == "follow_up"
    assert "review_window_lapsed" in [e.type for e in view.timeline]
    await driver.act(handle, OPERATOR, {"type": "record_return_visit", "satisfaction": 4})
    await driver.save_history(handle, "refusal_lapsed")


async def test_emergency_breach_escalates_within_hours(driver: CaseDriver) -> None:
    handle = await driver.open(urgency="emergency", description="对方扬言要动刀，情况紧急")
    view = await driver.view(handle)
    emergency = next(c for c in view.clocks if c.name == "emergency_response")
    assert emergency.due_at - emergency.started_at == timedelta(hours=1)
    await driver.advance(timedelta(hours=2))
    view = await driver.view(handle)
    assert view.stage == "escalated"
    assert view.escalation.reason.startswith("deadline missed")
    await driver.save_history(handle, "emergency_breach")
    await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "警方已处置"})


async def test_no_mediator_escalates_to_legal_aid_and_a_lawyer_is_named_by_hand(driver: CaseDriver) -> None:
    # County 370104 has no mediator and no lawyer of its own; its city (3701) has both.
    city_officer = OFFICER.model_copy(update={"region_code": "3701"})
    handle = await driver.open(region_code="370104")
    view = await driver.act(handle, OPERATOR.model_copy(update={"region_code": "370104"}), {"type": "send_to_mediation"})
    assert view.stage == "escalated" and view.mediator is None
    assert "no active mediator in region 370104" in view.escalation.reason
    view = await driver.act(handle, SUPERVISOR, {"type": "send_to_legal_aid", "reason": "调解员不足，转法律援助"})
    assert view.stage == "legal_aid_review"
    await driver.act(handle, city_officer, {"type": "assess_eligibility", "monthly_income_per_capita": 800})
    view = await driver.act(handle, city_officer, {"type": "decide_legal_aid", "approve": True, "reason": "经济困难"})
    assert view.stage == "legal_aid_assignment" and view.lawyer is None
    assert "no_lawyer_available" in [e.type for e in view.timeline]
    assert [t.kind for t in view.tasks] == ["assign_lawyer"]
    view = await driver.act(handle, city_officer, {"type": "assign_lawyer", "lawyer_id": "law-370102-01"})
    assert view.stage == "legal_aid_representation" and view.lawyer.id == "law-370102-01"
    await driver.act(handle, city_officer, {"type": "record_legal_aid_outcome", "outcome": "调解结案"})
    view = await driver.act(handle, OPERATOR.model_copy(update={"region_code": "370104"}),
                            {"type": "record_return_visit", "satisfaction": 4})
    assert stages(view) == ["triage", "mediation", "escalated", "legal_aid_review", "legal_aid_assignment",
                            "legal_aid_representation", "follow_up", "closed"]
    assert_projected(driver, view)
    await driver.save_history(handle, "escalated_to_legal_aid")


async def test_an_extension_asked_approved_then_another_refused(driver: CaseDriver) -> None:
    """The mediator asks for more time and the supervisor approves: the deadline (and its timer)
    moves, so the old due time passes quietly. Asked again and refused, the clock breaches when due."""
    handle = await driver.open()
    view = await driver.act(handle, OPERATOR, {"type": "send_to_mediation"})
    clock = next(c for c in view.clocks if c.name == "mediation_conclusion")
    assigned = mediator(view.mediator.id)
    ask = {"type": "request_extension", "clock_id": clock.clock_id,
           "by": {"amount": 10, "unit": "calendar_days"}, "reason": "当事人外出务工，下月返回"}
    view = await driver.act(handle, assigned, ask)
    assert [r.clock_id for r in view.extension_requests] == [clock.clock_id]
    assert [t.kind for t in view.tasks] == ["hold_mediation_session", "decide_extension"]

    await driver.advance(timedelta(days=20))
    view = await driver.act(handle, SUPERVISOR, {"type": "decide_extension", "clock_id": clock.clock_id,
                                                 "approve": True, "reason": "同意"})
    extended = next(c for c in view.clocks if c.clock_id == clock.clock_id)
    assert extended.due_at == clock.due_at + timedelta(days=10)
    assert extended.extensions[-1].approved_by == SUPERVISOR.user_id

    await driver.advance(timedelta(days=12))  # past the first due time: no breach, it moved
    view = await driver.view(handle)
    assert view.stage == "mediation" and not view.breached

    await driver.act(handle, assigned, ask | {"reason": "再延长十天"})
    view = await driver.act(handle, SUPERVISOR, {"type": "decide_extension", "clock_id": clock.clock_id,
                                                 "approve": False, "reason": "请按期结案"})
    assert view.extension_requests == [] and [t.kind for t in view.tasks] == ["hold_mediation_session"]
    await driver.advance(timedelta(days=10))  # the extended due time passes
    view = await driver.view(handle)
    assert view.stage == "escalated" and view.breached
    types = [e.type for e in view.timeline]
    assert types.count("extension_requested") == 2
    assert types.index("extension_approved") < types.index("extension_refused") < types.index("clock_breached")
    view = await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "当事人撤回"})
    assert_projected(driver, view)  # the action waits for its snapshot, written after the earlier ones
    for c in view.clocks:  # each row says when its clock ended, met or (on withdrawal) cancelled
        row = clock_row(driver, view.case_id, c.clock_id)
        assert c.ended_at is not None and (row.status, row.ended_at) == (c.status, c.ended_at)
        assert row.met_at == (c.ended_at if c.status == "met" else None)
    assert {c.status for c in view.clocks} == {"met", "cancelled"}
    await driver.save_history(handle, "extension_approved_then_refused")
